package matrix

// syncUnread fills unread_notifications (and unread_thread_notifications)
// of every joined room in a /sync response (Client-Server API §"Receiving
// notifications").
func (s *Server) syncUnread(c *caller, resp *syncResponse) error {
	return nil
}

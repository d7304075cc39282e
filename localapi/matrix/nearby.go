package matrix

// Nearby is where the user directory finds people nearby (issue 11): the
// accounts that Hearth daemons on the local network announce, each with
// its display name. The daemon implements it over LAN discovery, listing
// only peers whose signing key is the one pinned for their name, so a
// stranger on the Wi-Fi cannot put names in someone's directory under a
// server name it does not own. Declared here so this package never
// imports discovery.
type Nearby interface {
	NearbyPeople() []NearbyPerson
}

// NearbyPerson is one person a LAN peer announces.
type NearbyPerson struct {
	UserID      string // @localpart:peer.server.name
	DisplayName string
}

// SetNearby makes /user_directory/search include people nearby; call it
// before serving.
func (s *Server) SetNearby(n Nearby) { s.nearby = n }

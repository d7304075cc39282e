package matrix

import "net/http"

// routes registers the Client-Server API: the endpoints below, and at its
// end the modules that register their own in an xxxRoutes function beside
// their handlers (voip, media, search with /threads, push rules, keys,
// knock, deactivation, upgrades, the space hierarchy, the legacy
// endpoints). Paths follow the spec (v3 unless the spec puts an endpoint
// elsewhere); the r0 aliases are mapped onto them in ServeHTTP
// (routes_legacy.go).
func (s *Server) routes() {
	m := s.mux
	const v3 = "/_matrix/client/v3"
	a := s.authed

	m.HandleFunc("/", public(s.unrecognized))
	m.HandleFunc("GET /_matrix/client/versions", public(s.versions))
	m.HandleFunc("GET /.well-known/matrix/client", public(s.wellKnown))
	m.HandleFunc("GET "+v3+"/capabilities", a(s.capabilities))
	s.voipRoutes()
	s.slidingSyncRoutes()

	// Authentication and accounts.
	m.HandleFunc("GET "+v3+"/login", public(s.loginFlows))
	m.HandleFunc("POST "+v3+"/login", public(s.login))
	m.HandleFunc("POST "+v3+"/refresh", public(s.refresh))
	m.HandleFunc("POST "+v3+"/logout", a(s.logout))
	m.HandleFunc("POST "+v3+"/logout/all", a(s.logoutAll))
	m.HandleFunc("GET "+v3+"/account/whoami", a(s.whoami))
	m.HandleFunc("POST "+v3+"/account/password", a(s.changePassword))
	m.HandleFunc("POST /_matrix/client/v1/login/get_token", a(s.getLoginToken))
	m.HandleFunc("POST "+v3+"/register", public(s.register))
	m.HandleFunc("GET "+v3+"/register/available", public(s.registerAvailable))
	m.HandleFunc("GET /_matrix/client/v1/register/m.login.registration_token/validity", public(s.tokenValidity))

	// Devices.
	m.HandleFunc("GET "+v3+"/devices", a(s.listDevices))
	m.HandleFunc("GET "+v3+"/devices/{deviceId}", a(s.getDevice))
	m.HandleFunc("PUT "+v3+"/devices/{deviceId}", a(s.putDevice))
	m.HandleFunc("DELETE "+v3+"/devices/{deviceId}", a(s.deleteDevice))
	m.HandleFunc("POST "+v3+"/delete_devices", a(s.deleteDevices))

	// Profiles, presence, account data, filters, the user directory.
	m.HandleFunc("GET "+v3+"/profile/{userId}", public(s.getProfile))
	m.HandleFunc("GET "+v3+"/profile/{userId}/{field}", public(s.getProfile))
	m.HandleFunc("PUT "+v3+"/profile/{userId}/{field}", a(s.putProfile))
	m.HandleFunc("GET "+v3+"/presence/{userId}/status", a(s.getPresence))
	m.HandleFunc("PUT "+v3+"/presence/{userId}/status", a(s.putPresence))
	m.HandleFunc("GET "+v3+"/user/{userId}/account_data/{type}", a(s.getAccountData))
	m.HandleFunc("PUT "+v3+"/user/{userId}/account_data/{type}", a(s.putAccountData))
	m.HandleFunc("GET "+v3+"/user/{userId}/rooms/{roomId}/account_data/{type}", a(s.getAccountData))
	m.HandleFunc("PUT "+v3+"/user/{userId}/rooms/{roomId}/account_data/{type}", a(s.putAccountData))
	m.HandleFunc("POST "+v3+"/user/{userId}/filter", a(s.putFilter))
	m.HandleFunc("GET "+v3+"/user/{userId}/filter/{filterId}", a(s.getFilter))
	m.HandleFunc("POST "+v3+"/user_directory/search", a(s.userDirectory))

	// Rooms.
	m.HandleFunc("POST "+v3+"/createRoom", a(s.createRoom))
	m.HandleFunc("POST "+v3+"/join/{roomIdOrAlias}", a(s.joinRoom))
	m.HandleFunc("POST "+v3+"/rooms/{roomId}/join", a(s.joinRoom))
	for _, op := range []string{"leave", "invite", "kick", "ban", "unban"} {
		m.HandleFunc("POST "+v3+"/rooms/{roomId}/"+op, a(s.membership(op)))
	}
	m.HandleFunc("POST "+v3+"/rooms/{roomId}/forget", a(s.forget))
	m.HandleFunc("GET "+v3+"/joined_rooms", a(s.joinedRooms))
	m.HandleFunc("PUT "+v3+"/rooms/{roomId}/send/{eventType}/{txnId}", a(s.sendMessage))
	m.HandleFunc("PUT "+v3+"/rooms/{roomId}/redact/{eventId}/{txnId}", a(s.redact))
	m.HandleFunc("GET "+v3+"/rooms/{roomId}/state", a(s.getState))
	m.HandleFunc("GET "+v3+"/rooms/{roomId}/state/{eventType}", a(s.getStateEvent))
	m.HandleFunc("GET "+v3+"/rooms/{roomId}/state/{eventType}/{stateKey...}", a(s.getStateEvent))
	m.HandleFunc("PUT "+v3+"/rooms/{roomId}/state/{eventType}", a(s.putState))
	m.HandleFunc("PUT "+v3+"/rooms/{roomId}/state/{eventType}/{stateKey...}", a(s.putState))
	m.HandleFunc("GET "+v3+"/rooms/{roomId}/members", a(s.members))
	m.HandleFunc("GET "+v3+"/rooms/{roomId}/joined_members", a(s.joinedMembers))
	m.HandleFunc("GET "+v3+"/rooms/{roomId}/event/{eventId}", a(s.getEvent))
	m.HandleFunc("GET "+v3+"/rooms/{roomId}/context/{eventId}", a(s.eventContext))
	m.HandleFunc("GET "+v3+"/rooms/{roomId}/messages", a(s.messages))
	m.HandleFunc("GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}", a(s.relations))
	m.HandleFunc("GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}", a(s.relations))
	m.HandleFunc("GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", a(s.relations))
	m.HandleFunc("PUT "+v3+"/rooms/{roomId}/typing/{userId}", a(s.typing))
	m.HandleFunc("POST "+v3+"/rooms/{roomId}/receipt/{receiptType}/{eventId}", a(s.receipt))
	m.HandleFunc("POST "+v3+"/rooms/{roomId}/read_markers", a(s.readMarkers))
	m.HandleFunc("GET "+v3+"/rooms/{roomId}/aliases", a(s.roomAliases))

	// Directory.
	m.HandleFunc("GET "+v3+"/directory/room/{alias}", public(s.getAlias))
	m.HandleFunc("PUT "+v3+"/directory/room/{alias}", a(s.putAlias))
	m.HandleFunc("DELETE "+v3+"/directory/room/{alias}", a(s.deleteAlias))
	m.HandleFunc("GET "+v3+"/directory/list/room/{roomId}", public(s.getVisibility))
	m.HandleFunc("PUT "+v3+"/directory/list/room/{roomId}", a(s.putVisibility))
	m.HandleFunc("GET "+v3+"/publicRooms", public(s.publicRooms))
	m.HandleFunc("POST "+v3+"/publicRooms", a(func(w http.ResponseWriter, r *http.Request, _ *caller) error { return s.publicRooms(w, r) }))

	m.HandleFunc("GET "+v3+"/pushrules/{$}", a(s.pushRules))
	m.HandleFunc("GET "+v3+"/pushrules/global/{$}", a(s.pushRules))

	m.HandleFunc("GET "+v3+"/sync", a(s.sync))
	s.mediaRoutes()
	s.searchRoutes()
	s.pushRoutes()
	s.keysRoutes()
	s.appserviceRoutes()
	s.knockRoutes()
	s.deactivateRoutes()
	s.upgradeRoutes()
	s.hierarchyRoutes()
	s.delayedRoutes()
	s.roomSummaryRoutes()
	s.legacyRoutes()
}

package matrix

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/push"
)

// SetPush connects the push service: rules, notifications and pushers.
// Without it only the predefined rules are served.
func (s *Server) SetPush(p *push.Service) { s.push = p }

// pushRoutes registers push rules, /notifications and /pushers
// (Client-Server API §"Push Notifications").
func (s *Server) pushRoutes() {
	m, a, v3 := s.mux, s.authed, "/_matrix/client/v3"
	m.HandleFunc("GET "+v3+"/pushrules/global/{kind}/{$}", a(s.pushRulesKind))
	m.HandleFunc("GET "+v3+"/pushrules/global/{kind}/{ruleId}", a(s.getPushRule))
	m.HandleFunc("PUT "+v3+"/pushrules/global/{kind}/{ruleId}", a(s.putPushRule))
	m.HandleFunc("DELETE "+v3+"/pushrules/global/{kind}/{ruleId}", a(s.deletePushRule))
	m.HandleFunc("GET "+v3+"/pushrules/global/{kind}/{ruleId}/{attr}", a(s.getPushRuleAttr))
	m.HandleFunc("PUT "+v3+"/pushrules/global/{kind}/{ruleId}/{attr}", a(s.putPushRuleAttr))
	m.HandleFunc("GET "+v3+"/notifications", a(s.notifications))
	m.HandleFunc("GET "+v3+"/pushers", a(s.getPushers))
	m.HandleFunc("POST "+v3+"/pushers/set", a(s.setPusher))
}

// pushRules serves GET /pushrules/ and /pushrules/global/ (Client-Server
// API §"GET /pushrules/"). Clients fetch these before their first sync.
func (s *Server) pushRules(w http.ResponseWriter, r *http.Request, c *caller) {
	var global any
	if s.push != nil {
		g, err := s.push.Rules.Global(c.UserID)
		if err != nil {
			matrixerr.Write(w, err)
			return
		}
		global = g
	} else {
		rs, err := push.Defaults(c.UserID)
		if err != nil {
			matrixerr.Write(w, err)
			return
		}
		global = push.GlobalOf(rs)
	}
	if strings.HasSuffix(r.URL.Path, "/global/") {
		writeJSON(w, global)
		return
	}
	writeJSON(w, map[string]any{"global": global})
}

// pushService returns the service or writes M_UNRECOGNIZED when push is
// not wired (only in tests that build a bare server).
func (s *Server) pushService(w http.ResponseWriter) *push.Service {
	if s.push == nil {
		matrixerr.Write(w, matrixerr.Unrecognized("push is not enabled"))
	}
	return s.push
}

func (s *Server) pushRulesKind(w http.ResponseWriter, r *http.Request, c *caller) {
	p := s.pushService(w)
	if p == nil {
		return
	}
	g, err := p.Rules.Global(c.UserID)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	rules, ok := g[r.PathValue("kind")]
	if !ok {
		matrixerr.Write(w, matrixerr.InvalidParam("unknown push rule kind"))
		return
	}
	writeJSON(w, rules)
}

func (s *Server) getPushRule(w http.ResponseWriter, r *http.Request, c *caller) {
	p := s.pushService(w)
	if p == nil {
		return
	}
	rule, err := p.Rules.Rule(c.UserID, r.PathValue("kind"), r.PathValue("ruleId"))
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, (*push.Rule)(rule))
}

// putPushRule adds or replaces a user-defined rule (§"PUT
// /pushrules/global/{kind}/{ruleId}"); before and after place it.
func (s *Server) putPushRule(w http.ResponseWriter, r *http.Request, c *caller) {
	p := s.pushService(w)
	if p == nil {
		return
	}
	body, err := readBody(r)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	rule, err := push.DecodeRule(r.PathValue("kind"), r.PathValue("ruleId"), body)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	q := r.URL.Query()
	if err := p.Rules.Put(r.Context(), c.UserID, rule, q.Get("before"), q.Get("after")); err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, map[string]any{})
}

func (s *Server) deletePushRule(w http.ResponseWriter, r *http.Request, c *caller) {
	p := s.pushService(w)
	if p == nil {
		return
	}
	if err := p.Rules.Delete(r.Context(), c.UserID, r.PathValue("kind"), r.PathValue("ruleId")); err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, map[string]any{})
}

// getPushRuleAttr serves .../enabled and .../actions.
func (s *Server) getPushRuleAttr(w http.ResponseWriter, r *http.Request, c *caller) {
	p := s.pushService(w)
	if p == nil {
		return
	}
	attr := r.PathValue("attr")
	if attr != "enabled" && attr != "actions" {
		s.unrecognized(w, r)
		return
	}
	rule, err := p.Rules.Rule(c.UserID, r.PathValue("kind"), r.PathValue("ruleId"))
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	if attr == "enabled" {
		writeJSON(w, map[string]any{"enabled": rule.Enabled})
		return
	}
	writeJSON(w, map[string]any{"actions": push.Actions(rule.Actions)})
}

// putPushRuleAttr sets .../enabled ({"enabled": bool}) or .../actions
// ({"actions": [...]}), for default and user rules alike.
func (s *Server) putPushRuleAttr(w http.ResponseWriter, r *http.Request, c *caller) {
	p := s.pushService(w)
	if p == nil {
		return
	}
	attr, kind, id := r.PathValue("attr"), r.PathValue("kind"), r.PathValue("ruleId")
	if attr != "enabled" && attr != "actions" {
		s.unrecognized(w, r)
		return
	}
	body, err := readBody(r)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	var in map[string]json.RawMessage
	if err := json.Unmarshal(body, &in); err != nil {
		matrixerr.Write(w, matrixerr.BadJSON("body must be an object"))
		return
	}
	if attr == "enabled" {
		var enabled bool
		if err := json.Unmarshal(in["enabled"], &enabled); err != nil {
			matrixerr.Write(w, matrixerr.BadJSON("enabled must be a boolean"))
			return
		}
		err = p.Rules.SetEnabled(r.Context(), c.UserID, kind, id, enabled)
	} else {
		if in["actions"] == nil {
			matrixerr.Write(w, matrixerr.MissingParam("actions is required"))
			return
		}
		actions, derr := push.DecodeActions(in["actions"])
		if derr != nil {
			matrixerr.Write(w, derr)
			return
		}
		err = p.Rules.SetActions(r.Context(), c.UserID, kind, id, actions)
	}
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, map[string]any{})
}

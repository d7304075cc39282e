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
func (s *Server) pushRules(w http.ResponseWriter, r *http.Request, c *caller) error {
	var global any
	if s.push != nil {
		g, err := s.push.Rules.Global(c.UserID)
		if err != nil {
			return err
		}
		global = g
	} else {
		rs, err := push.Defaults(c.UserID)
		if err != nil {
			return err
		}
		global = push.GlobalOf(rs)
	}
	if strings.HasSuffix(r.URL.Path, "/global/") {
		matrixerr.WriteJSON(w, http.StatusOK, global)
		return nil
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"global": global})
	return nil
}

// pushService returns the service, or M_UNRECOGNIZED when push is not
// wired (only in tests that build a bare server).
func (s *Server) pushService() (*push.Service, error) {
	if s.push == nil {
		return nil, matrixerr.Unrecognized("push is not enabled")
	}
	return s.push, nil
}

func (s *Server) pushRulesKind(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := s.pushService()
	if err != nil {
		return err
	}
	g, err := p.Rules.Global(c.UserID)
	if err != nil {
		return err
	}
	rules, ok := g[r.PathValue("kind")]
	if !ok {
		return matrixerr.InvalidParam("unknown push rule kind")
	}
	matrixerr.WriteJSON(w, http.StatusOK, rules)
	return nil
}

func (s *Server) getPushRule(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := s.pushService()
	if err != nil {
		return err
	}
	rule, err := p.Rules.Rule(c.UserID, r.PathValue("kind"), r.PathValue("ruleId"))
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, (*push.Rule)(rule))
	return nil
}

// putPushRule adds or replaces a user-defined rule (§"PUT
// /pushrules/global/{kind}/{ruleId}"); before and after place it.
func (s *Server) putPushRule(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := s.pushService()
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	rule, err := push.DecodeRule(r.PathValue("kind"), r.PathValue("ruleId"), body)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if err := p.Rules.Put(r.Context(), c.UserID, rule, q.Get("before"), q.Get("after")); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{})
	return nil
}

func (s *Server) deletePushRule(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := s.pushService()
	if err != nil {
		return err
	}
	if err := p.Rules.Delete(r.Context(), c.UserID, r.PathValue("kind"), r.PathValue("ruleId")); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{})
	return nil
}

// getPushRuleAttr serves .../enabled and .../actions.
func (s *Server) getPushRuleAttr(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := s.pushService()
	if err != nil {
		return err
	}
	attr := r.PathValue("attr")
	if attr != "enabled" && attr != "actions" {
		return s.unrecognized(w, r)
	}
	rule, err := p.Rules.Rule(c.UserID, r.PathValue("kind"), r.PathValue("ruleId"))
	if err != nil {
		return err
	}
	if attr == "enabled" {
		matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"enabled": rule.Enabled})
		return nil
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"actions": push.Actions(rule.Actions)})
	return nil
}

// putPushRuleAttr sets .../enabled ({"enabled": bool}) or .../actions
// ({"actions": [...]}), for default and user rules alike.
func (s *Server) putPushRuleAttr(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := s.pushService()
	if err != nil {
		return err
	}
	attr, kind, id := r.PathValue("attr"), r.PathValue("kind"), r.PathValue("ruleId")
	if attr != "enabled" && attr != "actions" {
		return s.unrecognized(w, r)
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var in map[string]json.RawMessage
	if err := json.Unmarshal(body, &in); err != nil {
		return matrixerr.BadJSON("body must be an object")
	}
	if attr == "enabled" {
		var enabled bool
		if err := json.Unmarshal(in["enabled"], &enabled); err != nil {
			return matrixerr.BadJSON("enabled must be a boolean")
		}
		err = p.Rules.SetEnabled(r.Context(), c.UserID, kind, id, enabled)
	} else {
		if in["actions"] == nil {
			return matrixerr.MissingParam("actions is required")
		}
		actions, derr := push.DecodeActions(in["actions"])
		if derr != nil {
			return derr
		}
		err = p.Rules.SetActions(r.Context(), c.UserID, kind, id, actions)
	}
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{})
	return nil
}

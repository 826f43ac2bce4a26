package httpv1

import (
	"encoding/json"
	"net/http"
)

// WriteJSON answers with code and v as indented JSON, the way every API handler answers.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// A client that went away mid-answer is not the server's error; nothing more to do.
	_ = enc.Encode(v)
}

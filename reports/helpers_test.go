package reports

import (
	"encoding/json"
	"io"
	"sync"
)

func jsonLine(ev *Event) ([]byte, error) {
	b, err := json.Marshal(ev)
	return append(b, '\n'), err
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

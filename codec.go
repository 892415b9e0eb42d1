package duro

import (
	"encoding/json"
	"fmt"
)

// Codec encodes the payloads that cross history: inputs, outputs, event data,
// custom status and error details. The default is JSON.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSONCodec is the default Codec, encoding/json.
type JSONCodec struct{}

// Marshal implements Codec.
func (JSONCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal implements Codec.
func (JSONCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// DefaultMaxPayloadBytes is the default limit of one encoded payload.
const DefaultMaxPayloadBytes = 2 << 20

// payloads applies a codec and the size limit.
type payloads struct {
	codec Codec
	limit int
}

func (p payloads) encode(what string, v any) ([]byte, error) {
	return p.encodeAs(func() string { return what }, v)
}

// encodeAs is encode for a payload whose name is formatted only if an error
// needs it: a hot path's encode does not pay for fmt.Sprintf.
func (p payloads) encodeAs(what func() string, v any) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	b, err := p.codec.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", what(), err)
	}
	if p.limit > 0 && len(b) > p.limit {
		return nil, &PayloadTooLargeError{What: what(), Size: len(b), Limit: p.limit}
	}
	return b, nil
}

// decode decodes data into ptr. An empty payload leaves ptr unchanged; a nil
// ptr ignores the payload.
func (p payloads) decode(what string, data []byte, ptr any) error {
	return p.decodeAs(func() string { return what }, data, ptr)
}

// decodeAs is decode for a payload whose name is formatted only if an error
// needs it.
func (p payloads) decodeAs(what func() string, data []byte, ptr any) error {
	if ptr == nil || len(data) == 0 {
		return nil
	}
	if err := p.codec.Unmarshal(data, ptr); err != nil {
		return &PayloadDecodeError{What: what(), Type: fmt.Sprintf("%T", ptr), Err: err}
	}
	return nil
}

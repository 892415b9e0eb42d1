package dtgrpc_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/durohq/duro/server/dtgrpc/dtpb"
)

// TestProtoRoundTripJS proves that duro's .proto agrees with the one the
// JavaScript SDK was generated from: every message of durabletask.proto,
// with every field set (one case per member of its oneofs), is encoded by
// Go, decoded by @microsoft/durabletask-js's generated code, and checked
// field by field under the SDK's names; the SDK's re-encoding must decode
// to the same message in Go.
func TestProtoRoundTripJS(t *testing.T) {
	node, dir := needJS(t)
	fd := dtpb.File_durabletask_proto
	type jsCase struct {
		Type string `json:"type"`
		B64  string `json:"b64"`
	}
	var cases []jsCase
	var msgs []proto.Message
	for i := range fd.Messages().Len() {
		md := fd.Messages().Get(i)
		variants := 1
		for j := range md.Oneofs().Len() {
			variants = max(variants, md.Oneofs().Get(j).Fields().Len())
		}
		for v := range variants {
			m := dynamicpb.NewMessage(md)
			populate(m, v, 0)
			b, err := proto.Marshal(m)
			if err != nil {
				t.Fatalf("%s: %v", md.Name(), err)
			}
			cases = append(cases, jsCase{Type: string(md.Name()), B64: base64.StdEncoding.EncodeToString(b)})
			msgs = append(msgs, m)
		}
	}
	in, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "roundtrip.js"))
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("roundtrip.js: %v\n%s", err, stderr.String())
	}
	var results []struct {
		Error  string         `json:"error"`
		Leaves map[string]any `json:"leaves"`
		B64    string         `json:"b64"`
	}
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatalf("roundtrip.js output: %v", err)
	}
	if len(results) != len(cases) {
		t.Fatalf("roundtrip.js answered %d cases of %d", len(results), len(cases))
	}
	checked := 0
	for i, r := range results {
		m := msgs[i]
		name := cases[i].Type
		if r.Error != "" {
			t.Errorf("%s: %s", name, r.Error)
			continue
		}
		want := map[string]any{}
		leaves(m.ProtoReflect(), "", want)
		for path, w := range want {
			got, ok := r.Leaves[path]
			if !ok {
				t.Errorf("%s: the JavaScript code has no %s (want %v)", name, path, w)
				continue
			}
			if fmt.Sprint(got) != fmt.Sprint(w) {
				t.Errorf("%s: %s is %v in JavaScript, want %v", name, path, got, w)
			}
			checked++
		}
		b, err := base64.StdEncoding.DecodeString(r.B64)
		if err != nil {
			t.Fatal(err)
		}
		back := dynamicpb.NewMessage(m.ProtoReflect().Descriptor())
		if err := proto.Unmarshal(b, back); err != nil {
			t.Errorf("%s: re-encoded by JavaScript: %v", name, err)
			continue
		}
		if !proto.Equal(back, m) {
			t.Errorf("%s: changed in the round trip through JavaScript", name)
		}
	}
	if checked < 500 {
		t.Fatalf("only %d fields checked", checked)
	}
	t.Logf("%d messages, %d fields checked", len(cases), checked)
}

// populate sets every field of m: strings to their field's name, numbers
// to a value derived from the field number, each oneof to its member
// variant (modulo its size), down to a few levels of nesting.
func populate(m protoreflect.Message, variant, depth int) {
	md := m.Descriptor()
	fields := md.Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		if o := f.ContainingOneof(); o != nil {
			if o.Fields().Get(variant%o.Fields().Len()) != f {
				continue
			}
		}
		switch {
		case f.IsMap():
			if depth > 2 {
				continue
			}
			mp := m.Mutable(f).Map()
			k := protoreflect.ValueOfString(string(f.Name()) + "-key").MapKey()
			if f.MapValue().Kind() == protoreflect.MessageKind {
				v := mp.NewValue()
				populate(v.Message(), variant, depth+1)
				mp.Set(k, v)
			} else {
				mp.Set(k, scalar(f.MapValue(), 1))
			}
		case f.IsList():
			if depth > 2 {
				continue
			}
			l := m.Mutable(f).List()
			for n := range 2 {
				if f.Kind() == protoreflect.MessageKind {
					v := l.NewElement()
					populate(v.Message(), variant+n, depth+1)
					l.Append(v)
				} else {
					l.Append(scalar(f, n+1))
				}
			}
		case f.Kind() == protoreflect.MessageKind:
			if depth > 2 {
				continue
			}
			populate(m.Mutable(f).Message(), variant, depth+1)
		default:
			m.Set(f, scalar(f, 1))
		}
	}
}

func scalar(f protoreflect.FieldDescriptor, n int) protoreflect.Value {
	num := int64(f.Number())*10 + int64(n)
	switch f.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(fmt.Sprintf("%s-%d", f.Name(), n))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		vals := f.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get((int(f.Number()) + n) % vals.Len()).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(num))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(num)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(num))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(num))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(num) + 0.5)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(num) + 0.5)
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(f.Name()))
	}
	panic(fmt.Sprintf("kind %v", f.Kind()))
}

// jsName is the name google-protobuf's toObject gives a field: the proto
// name lowercased, with each underscore-separated part after the first
// capitalised.
func jsName(f protoreflect.FieldDescriptor) string {
	parts := strings.Split(string(f.Name()), "_")
	for i, p := range parts {
		p = strings.ToLower(p)
		if i > 0 && p != "" {
			p = strings.ToUpper(p[:1]) + p[1:]
		}
		parts[i] = p
	}
	return strings.Join(parts, "")
}

// leaves lists the set scalar leaves of m by the paths roundtrip.js gives
// them in toObject's output.
func leaves(m protoreflect.Message, prefix string, out map[string]any) {
	m.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := prefix + jsName(f)
		switch {
		case f.IsMap():
			name += "Map"
			i := 0
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				p := fmt.Sprintf("%s[%d]", name, i)
				out[p+"[0]"] = k.String()
				if f.MapValue().Kind() == protoreflect.MessageKind {
					leaves(mv.Message(), p+"[1].", out)
				} else {
					out[p+"[1]"] = jsValue(f.MapValue(), mv)
				}
				i++
				return true
			})
		case f.IsList():
			name += "List"
			l := v.List()
			for i := range l.Len() {
				p := fmt.Sprintf("%s[%d]", name, i)
				if f.Kind() == protoreflect.MessageKind {
					leaves(l.Get(i).Message(), p+".", out)
				} else {
					out[p] = jsValue(f, l.Get(i))
				}
			}
		case f.Kind() == protoreflect.MessageKind:
			leaves(v.Message(), name+".", out)
		default:
			out[name] = jsValue(f, v)
		}
		return true
	})
}

func jsValue(f protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch f.Kind() {
	case protoreflect.EnumKind:
		return float64(v.Enum())
	case protoreflect.BytesKind:
		return base64.StdEncoding.EncodeToString(v.Bytes())
	case protoreflect.StringKind:
		return v.String()
	case protoreflect.BoolKind:
		return v.Bool()
	case protoreflect.DoubleKind, protoreflect.FloatKind:
		return v.Float()
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return float64(v.Uint())
	}
	return float64(v.Int())
}

package kafkad

// A small msgpack codec covering what the kafkad protocol needs.
//
// Encoding is canonical: every integer in its smallest encoding (non-negative
// values in the positive fixint/uint family, negative ones in the negative
// fixint/int family), str as str (str8 from 32 bytes on), []byte as bin, and
// map entries in the order given (omap) or sorted by key (map[string]any).
// This is what Python's msgpack (use_bin_type=True) writes, so the protocol
// vectors are reproduced byte for byte.
//
// Decoding accepts every msgpack type. Integers decode to int64, or uint64
// when above math.MaxInt64; str to string; bin to []byte (aliasing the input);
// float32/float64 to float64; ext to extValue.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
)

// mapEntry is one key/value pair of an omap.
type mapEntry struct {
	Key   string
	Value any
}

// omap is a msgpack map whose entries keep their order on the wire.
type omap []mapEntry

// Get returns the value for key and whether it is present.
func (m omap) Get(key string) (any, bool) {
	for i := range m {
		if m[i].Key == key {
			return m[i].Value, true
		}
	}
	return nil, false
}

// extValue is a msgpack extension value (not used by the protocol; kept when decoded).
type extValue struct {
	Type int8
	Data []byte
}

// rawMsgpack is an already-encoded msgpack value, written as is.
type rawMsgpack []byte

var errShort = errors.New("msgpack: truncated input")

const maxDepth = 256

// ---------------------------------------------------------------- encoding

func appendNil(b []byte) []byte { return append(b, 0xc0) }

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 0xc3)
	}
	return append(b, 0xc2)
}

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return append(b, 0xcd, byte(v>>8), byte(v))
	case v <= math.MaxUint32:
		return append(b, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
	}
}

func appendInt(b []byte, v int64) []byte {
	if v >= 0 {
		return appendUint(b, uint64(v))
	}
	switch {
	case v >= -32:
		return append(b, byte(v))
	case v >= math.MinInt8:
		return append(b, 0xd0, byte(v))
	case v >= math.MinInt16:
		return append(b, 0xd1, byte(v>>8), byte(v))
	case v >= math.MinInt32:
		return append(b, 0xd2, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(v))
	}
}

func appendFloat64(b []byte, v float64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 0xcb), math.Float64bits(v))
}

func appendStrHeader(b []byte, n int) []byte {
	switch {
	case n < 32:
		return append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		return append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xda, byte(n>>8), byte(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
}

func appendStr(b []byte, s string) []byte {
	return append(appendStrHeader(b, len(s)), s...)
}

func appendBinHeader(b []byte, n int) []byte {
	switch {
	case n <= math.MaxUint8:
		return append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xc5, byte(n>>8), byte(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
	}
}

func appendBin(b []byte, v []byte) []byte {
	return append(appendBinHeader(b, len(v)), v...)
}

// appendBytesOrNil writes nil for a nil slice, else bin.
func appendBytesOrNil(b []byte, v []byte) []byte {
	if v == nil {
		return appendNil(b)
	}
	return appendBin(b, v)
}

func appendArrayHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xdc, byte(n>>8), byte(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
	}
}

func appendMapHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xde, byte(n>>8), byte(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(n))
	}
}

// appendValue encodes a Go value. Supported: nil, bool, all integer kinds,
// float32/64, string, []byte, rawMsgpack, omap, map[string]any, []any, and
// slices of string, int, int32, int64, []any and omap.
func appendValue(b []byte, v any) ([]byte, error) {
	return appendValueDepth(b, v, 0)
}

func appendValueDepth(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return b, errors.New("msgpack: value nested too deeply")
	}
	var err error
	switch x := v.(type) {
	case nil:
		return appendNil(b), nil
	case bool:
		return appendBool(b, x), nil
	case int:
		return appendInt(b, int64(x)), nil
	case int8:
		return appendInt(b, int64(x)), nil
	case int16:
		return appendInt(b, int64(x)), nil
	case int32:
		return appendInt(b, int64(x)), nil
	case int64:
		return appendInt(b, x), nil
	case uint:
		return appendUint(b, uint64(x)), nil
	case uint8:
		return appendUint(b, uint64(x)), nil
	case uint16:
		return appendUint(b, uint64(x)), nil
	case uint32:
		return appendUint(b, uint64(x)), nil
	case uint64:
		return appendUint(b, x), nil
	case float32:
		return binary.BigEndian.AppendUint32(append(b, 0xca), math.Float32bits(x)), nil
	case float64:
		return appendFloat64(b, x), nil
	case string:
		return appendStr(b, x), nil
	case []byte:
		if x == nil {
			return appendNil(b), nil
		}
		return appendBin(b, x), nil
	case rawMsgpack:
		return append(b, x...), nil
	case extValue:
		return appendExt(b, x), nil
	case omap:
		b = appendMapHeader(b, len(x))
		for _, e := range x {
			b = appendStr(b, e.Key)
			if b, err = appendValueDepth(b, e.Value, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = appendMapHeader(b, len(x))
		for _, k := range keys {
			b = appendStr(b, k)
			if b, err = appendValueDepth(b, x[k], depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case []any:
		b = appendArrayHeader(b, len(x))
		for _, e := range x {
			if b, err = appendValueDepth(b, e, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case []omap:
		b = appendArrayHeader(b, len(x))
		for _, e := range x {
			if b, err = appendValueDepth(b, e, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case []string:
		b = appendArrayHeader(b, len(x))
		for _, s := range x {
			b = appendStr(b, s)
		}
		return b, nil
	case []int:
		b = appendArrayHeader(b, len(x))
		for _, n := range x {
			b = appendInt(b, int64(n))
		}
		return b, nil
	case []int32:
		b = appendArrayHeader(b, len(x))
		for _, n := range x {
			b = appendInt(b, int64(n))
		}
		return b, nil
	case []int64:
		b = appendArrayHeader(b, len(x))
		for _, n := range x {
			b = appendInt(b, n)
		}
		return b, nil
	}
	return b, fmt.Errorf("msgpack: cannot encode %T", v)
}

func appendExt(b []byte, x extValue) []byte {
	n := len(x.Data)
	switch n {
	case 1:
		b = append(b, 0xd4)
	case 2:
		b = append(b, 0xd5)
	case 4:
		b = append(b, 0xd6)
	case 8:
		b = append(b, 0xd7)
	case 16:
		b = append(b, 0xd8)
	default:
		switch {
		case n <= math.MaxUint8:
			b = append(b, 0xc7, byte(n))
		case n <= math.MaxUint16:
			b = append(b, 0xc8, byte(n>>8), byte(n))
		default:
			b = binary.BigEndian.AppendUint32(append(b, 0xc9), uint32(n))
		}
	}
	return append(append(b, byte(x.Type)), x.Data...)
}

// ---------------------------------------------------------------- decoding

// decoder reads msgpack values from b starting at i. Byte slices it returns
// alias b.
type decoder struct {
	b []byte
	i int
}

type decodeError struct{ msg string }

func (e *decodeError) Error() string { return "msgpack: " + e.msg }

func errType(want string, c byte) error {
	return &decodeError{fmt.Sprintf("expected %s, found %s", want, typeName(c))}
}

func typeName(c byte) string {
	switch {
	case c <= 0x7f || c >= 0xe0 || (c >= 0xcc && c <= 0xd3):
		return "int"
	case c >= 0x80 && c <= 0x8f, c == 0xde, c == 0xdf:
		return "map"
	case c >= 0x90 && c <= 0x9f, c == 0xdc, c == 0xdd:
		return "array"
	case c >= 0xa0 && c <= 0xbf, c >= 0xd9 && c <= 0xdb:
		return "str"
	case c == 0xc0:
		return "nil"
	case c == 0xc2, c == 0xc3:
		return "bool"
	case c >= 0xc4 && c <= 0xc6:
		return "bin"
	case c == 0xca, c == 0xcb:
		return "float"
	case c == 0xc1:
		return "reserved byte 0xc1"
	default:
		return "ext"
	}
}

func (d *decoder) done() bool { return d.i >= len(d.b) }

func (d *decoder) peek() (byte, error) {
	if d.i >= len(d.b) {
		return 0, errShort
	}
	return d.b[d.i], nil
}

func (d *decoder) take(n int) ([]byte, error) {
	if n < 0 || len(d.b)-d.i < n {
		return nil, errShort
	}
	s := d.b[d.i : d.i+n : d.i+n]
	d.i += n
	return s, nil
}

func (d *decoder) u8() (uint64, error) {
	s, err := d.take(1)
	if err != nil {
		return 0, err
	}
	return uint64(s[0]), nil
}

func (d *decoder) u16() (uint64, error) {
	s, err := d.take(2)
	if err != nil {
		return 0, err
	}
	return uint64(binary.BigEndian.Uint16(s)), nil
}

func (d *decoder) u32() (uint64, error) {
	s, err := d.take(4)
	if err != nil {
		return 0, err
	}
	return uint64(binary.BigEndian.Uint32(s)), nil
}

func (d *decoder) u64() (uint64, error) {
	s, err := d.take(8)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(s), nil
}

// tryNil consumes a nil and reports whether there was one.
func (d *decoder) tryNil() bool {
	if d.i < len(d.b) && d.b[d.i] == 0xc0 {
		d.i++
		return true
	}
	return false
}

func (d *decoder) readArrayLen() (int, error) {
	c, err := d.peek()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case c >= 0x90 && c <= 0x9f:
		d.i++
		return int(c & 0x0f), nil
	case c == 0xdc:
		d.i++
		n, err = d.u16()
	case c == 0xdd:
		d.i++
		n, err = d.u32()
	default:
		return 0, errType("array", c)
	}
	if err != nil {
		return 0, err
	}
	// every element takes at least one byte
	if n > uint64(len(d.b)-d.i) {
		return 0, errShort
	}
	return int(n), nil
}

func (d *decoder) readMapLen() (int, error) {
	c, err := d.peek()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case c >= 0x80 && c <= 0x8f:
		d.i++
		return int(c & 0x0f), nil
	case c == 0xde:
		d.i++
		n, err = d.u16()
	case c == 0xdf:
		d.i++
		n, err = d.u32()
	default:
		return 0, errType("map", c)
	}
	if err != nil {
		return 0, err
	}
	if n > uint64(len(d.b)-d.i)/2 {
		return 0, errShort
	}
	return int(n), nil
}

// readStrBytes reads a str or bin and returns its bytes (aliasing the input).
func (d *decoder) readStrBytes() ([]byte, bool, error) {
	c, err := d.peek()
	if err != nil {
		return nil, false, err
	}
	var n uint64
	isStr := true
	switch {
	case c >= 0xa0 && c <= 0xbf:
		d.i++
		n = uint64(c & 0x1f)
	case c == 0xd9, c == 0xc4:
		d.i++
		n, err = d.u8()
		isStr = c == 0xd9
	case c == 0xda, c == 0xc5:
		d.i++
		n, err = d.u16()
		isStr = c == 0xda
	case c == 0xdb, c == 0xc6:
		d.i++
		n, err = d.u32()
		isStr = c == 0xdb
	default:
		return nil, false, errType("str or bin", c)
	}
	if err != nil {
		return nil, false, err
	}
	s, err := d.take(int(n))
	return s, isStr, err
}

func (d *decoder) readStr() (string, error) {
	s, _, err := d.readStrBytes()
	return string(s), err
}

// readBytes reads bin, str or nil (nil gives a nil slice).
func (d *decoder) readBytes() ([]byte, error) {
	if d.tryNil() {
		return nil, nil
	}
	s, _, err := d.readStrBytes()
	return s, err
}

// readInt reads any integer that fits an int64.
func (d *decoder) readInt() (int64, error) {
	c, err := d.peek()
	if err != nil {
		return 0, err
	}
	if c <= 0x7f {
		d.i++
		return int64(c), nil
	}
	if c >= 0xe0 {
		d.i++
		return int64(int8(c)), nil
	}
	var u uint64
	switch c {
	case 0xcc:
		d.i++
		u, err = d.u8()
		return int64(u), err
	case 0xcd:
		d.i++
		u, err = d.u16()
		return int64(u), err
	case 0xce:
		d.i++
		u, err = d.u32()
		return int64(u), err
	case 0xcf:
		d.i++
		if u, err = d.u64(); err == nil && u > math.MaxInt64 {
			err = &decodeError{"integer out of int64 range"}
		}
		return int64(u), err
	case 0xd0:
		d.i++
		u, err = d.u8()
		return int64(int8(u)), err
	case 0xd1:
		d.i++
		u, err = d.u16()
		return int64(int16(u)), err
	case 0xd2:
		d.i++
		u, err = d.u32()
		return int64(int32(u)), err
	case 0xd3:
		d.i++
		u, err = d.u64()
		return int64(u), err
	}
	return 0, errType("int", c)
}

func (d *decoder) readUint() (uint64, error) {
	c, err := d.peek()
	if err != nil {
		return 0, err
	}
	if c == 0xcf {
		d.i++
		return d.u64()
	}
	v, err := d.readInt()
	if err != nil {
		return 0, err
	}
	if v < 0 {
		return 0, &decodeError{"expected an unsigned integer"}
	}
	return uint64(v), nil
}

func (d *decoder) readBool() (bool, error) {
	c, err := d.peek()
	if err != nil {
		return false, err
	}
	switch c {
	case 0xc2:
		d.i++
		return false, nil
	case 0xc3:
		d.i++
		return true, nil
	}
	return false, errType("bool", c)
}

// skip steps over one value.
func (d *decoder) skip() error {
	start := d.i
	_, err := d.valueDepth(false, 0, true)
	if err != nil {
		d.i = start
	}
	return err
}

// raw returns the encoded bytes of the next value and steps over it.
func (d *decoder) raw() ([]byte, error) {
	start := d.i
	if err := d.skip(); err != nil {
		return nil, err
	}
	return d.b[start:d.i:d.i], nil
}

// readValue decodes one value; maps become omap (ordered) or map[string]any.
func (d *decoder) readValue(ordered bool) (any, error) {
	return d.valueDepth(ordered, 0, false)
}

func (d *decoder) valueDepth(ordered bool, depth int, skipOnly bool) (any, error) {
	if depth > maxDepth {
		return nil, &decodeError{"value nested too deeply"}
	}
	c, err := d.peek()
	if err != nil {
		return nil, err
	}
	switch {
	case c <= 0x7f, c >= 0xe0, c >= 0xcc && c <= 0xce, c >= 0xd0 && c <= 0xd3:
		return d.readInt()
	case c == 0xcf:
		d.i++
		u, err := d.u64()
		if err != nil {
			return nil, err
		}
		if u <= math.MaxInt64 {
			return int64(u), nil
		}
		return u, nil
	case c == 0xc0:
		d.i++
		return nil, nil
	case c == 0xc2, c == 0xc3:
		return d.readBool()
	case c == 0xc1:
		return nil, &decodeError{"reserved byte 0xc1"}
	case c == 0xca:
		d.i++
		u, err := d.u32()
		return float64(math.Float32frombits(uint32(u))), err
	case c == 0xcb:
		d.i++
		u, err := d.u64()
		return math.Float64frombits(u), err
	case c >= 0xa0 && c <= 0xbf, c >= 0xd9 && c <= 0xdb, c >= 0xc4 && c <= 0xc6:
		s, isStr, err := d.readStrBytes()
		if err != nil || skipOnly {
			return nil, err
		}
		if isStr {
			return string(s), nil
		}
		return s, nil
	case c >= 0x90 && c <= 0x9f, c == 0xdc, c == 0xdd:
		n, err := d.readArrayLen()
		if err != nil {
			return nil, err
		}
		var out []any
		if !skipOnly {
			out = make([]any, n)
		}
		for k := 0; k < n; k++ {
			v, err := d.valueDepth(ordered, depth+1, skipOnly)
			if err != nil {
				return nil, err
			}
			if !skipOnly {
				out[k] = v
			}
		}
		if skipOnly {
			return nil, nil
		}
		return out, nil
	case c >= 0x80 && c <= 0x8f, c == 0xde, c == 0xdf:
		n, err := d.readMapLen()
		if err != nil {
			return nil, err
		}
		if skipOnly {
			for k := 0; k < 2*n; k++ {
				if _, err := d.valueDepth(false, depth+1, true); err != nil {
					return nil, err
				}
			}
			return nil, nil
		}
		var om omap
		var um map[string]any
		if ordered {
			om = make(omap, 0, n)
		} else {
			um = make(map[string]any, n)
		}
		for k := 0; k < n; k++ {
			kb, _, err := d.readStrBytes()
			if err != nil {
				return nil, &decodeError{"map key: " + err.Error()}
			}
			v, err := d.valueDepth(ordered, depth+1, false)
			if err != nil {
				return nil, err
			}
			if ordered {
				om = append(om, mapEntry{string(kb), v})
			} else {
				um[string(kb)] = v
			}
		}
		if ordered {
			return om, nil
		}
		return um, nil
	default: // ext
		d.i++
		var n uint64
		switch c {
		case 0xd4:
			n = 1
		case 0xd5:
			n = 2
		case 0xd6:
			n = 4
		case 0xd7:
			n = 8
		case 0xd8:
			n = 16
		case 0xc7:
			n, err = d.u8()
		case 0xc8:
			n, err = d.u16()
		case 0xc9:
			n, err = d.u32()
		}
		if err != nil {
			return nil, err
		}
		t, err := d.take(1)
		if err != nil {
			return nil, err
		}
		data, err := d.take(int(n))
		if err != nil {
			return nil, err
		}
		return extValue{Type: int8(t[0]), Data: data}, nil
	}
}

// decodeValue decodes exactly one value from b.
func decodeValue(b []byte, ordered bool) (any, error) {
	d := decoder{b: b}
	v, err := d.readValue(ordered)
	if err != nil {
		return nil, err
	}
	if !d.done() {
		return nil, &decodeError{fmt.Sprintf("%d trailing bytes", len(b)-d.i)}
	}
	return v, nil
}

// eachMapKey calls fn for every key of the map at d, with d positioned on the
// value; fn must consume the value (or call d.skip).
func (d *decoder) eachMapKey(fn func(key []byte) error) error {
	n, err := d.readMapLen()
	if err != nil {
		return err
	}
	for k := 0; k < n; k++ {
		kb, _, err := d.readStrBytes()
		if err != nil {
			return err
		}
		if err := fn(kb); err != nil {
			return err
		}
	}
	return nil
}

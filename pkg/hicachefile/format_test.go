//go:build linux

package hicachefile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"slices"
	"testing"
)

// encodeFile returns a batch file: payload, then the index of entries and a
// trailer that says the index starts at len(payload).
func encodeFile(payload []byte, entries []indexEntry, fp uint64) []byte {
	f := appendIndex(slices.Clone(payload), entries, fp, nil)
	t := f[len(f)-trailerSize:]
	binary.LittleEndian.PutUint64(t[16:], uint64(len(payload)))
	binary.LittleEndian.PutUint32(t[52:], crc32.Checksum(t[:52], castagnoli))
	return f
}

// validFile returns a well-formed batch file of n pages of pageLen bytes.
func validFile(n, pageLen int) []byte {
	payload := make([]byte, n*pageLen)
	var entries []indexEntry
	for i := range n {
		page := payload[i*pageLen : (i+1)*pageLen]
		for j := range page {
			page[j] = byte(i*31 + j)
		}
		entries = append(entries, indexEntry{key: string(rune('a'+i)) + "key", off: int64(i * pageLen), length: int64(pageLen),
			crc: crc32.Checksum(page, castagnoli)})
	}
	return encodeFile(payload, entries, 0x1234_5678_9abc_def0)
}

// parseFile parses data as a whole batch file.
func parseFile(data []byte) (trailer, []indexEntry, error) {
	tb := data[max(0, len(data)-trailerSize):]
	t, err := parseTrailer(tb, int64(len(data)))
	if err != nil {
		return t, nil, err
	}
	entries, err := parseIndex(data[t.indexOff:t.indexOff+t.indexLen], t)
	return t, entries, err
}

// reseal rewrites data's trailer so that it passes every trailer check the
// fuzzer cannot be expected to hit by chance: magic, version, an index that
// ends at the trailer, and both checksums. The entry count and the index
// bytes stay as the fuzzer made them.
func reseal(data []byte) []byte {
	if len(data) < trailerSize {
		return data
	}
	d := slices.Clone(data)
	body := uint64(len(d) - trailerSize)
	t := d[body:]
	copy(t, batchMagic)
	binary.LittleEndian.PutUint32(t[8:], formatVersion)
	indexOff := binary.LittleEndian.Uint64(t[16:]) % (body + 1)
	binary.LittleEndian.PutUint64(t[16:], indexOff)
	binary.LittleEndian.PutUint64(t[24:], body-indexOff)
	binary.LittleEndian.PutUint32(t[32:], crc32.Checksum(d[indexOff:body], castagnoli))
	binary.LittleEndian.PutUint64(t[44:], 0) // no identity, no identity CRC
	binary.LittleEndian.PutUint32(t[52:], crc32.Checksum(t[:52], castagnoli))
	return d
}

// checkParsed fails t if parsing data yields an entry outside the payload.
func checkParsed(t *testing.T, data []byte) {
	tr, entries, err := parseFile(data)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v does not wrap ErrCorrupt", err)
		}
		return
	}
	size := int64(len(data))
	if tr.indexOff < 0 || tr.indexLen < 0 || tr.indexOff+tr.indexLen != size-trailerSize {
		t.Fatalf("index at %d+%d in a file of %d bytes", tr.indexOff, tr.indexLen, size)
	}
	if len(entries) != int(tr.count) {
		t.Fatalf("%d entries, trailer says %d", len(entries), tr.count)
	}
	for _, e := range entries {
		if e.off < 0 || e.length <= 0 || e.off > tr.indexOff-e.length || e.off%e.length != 0 {
			t.Fatalf("entry %q at %d+%d outside the payload of %d bytes, or misaligned", e.key, e.off, e.length, tr.indexOff)
		}
		if err := checkKeyChars(e.key); err != nil {
			t.Fatalf("entry with invalid key: %v", err)
		}
	}
}

func FuzzParseIndex(f *testing.F) {
	valid := validFile(3, 64)
	f.Add(valid)
	f.Add(validFile(0, 64))
	f.Add(validFile(1, 1))
	f.Add(valid[:len(valid)-1])
	f.Add(valid[len(valid)-trailerSize:])
	f.Add(valid[:10])
	f.Add([]byte{})
	for _, at := range []int{0, 3 * 64, 3*64 + 2, 3*64 + 6, 3*64 + 14, len(valid) - trailerSize + 12, len(valid) - 1} {
		m := slices.Clone(valid)
		m[at] ^= 0x80
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParsed(t, data)
		checkParsed(t, reseal(data))
	})
}

func TestParseValidFile(t *testing.T) {
	data := validFile(3, 64)
	if want := int64(3*64) + IndexSize([]string{"akey", "bkey", "ckey"}) + TrailerSize; int64(len(data)) != want {
		t.Fatalf("file is %d bytes, want %d", len(data), want)
	}
	tr, entries, err := parseFile(data)
	if err != nil {
		t.Fatal(err)
	}
	if tr.fp != 0x1234_5678_9abc_def0 || tr.indexOff != 3*64 || len(entries) != 3 {
		t.Fatalf("trailer %+v, %d entries", tr, len(entries))
	}
	for i, e := range entries {
		if want := string(rune('a'+i)) + "key"; e.key != want || e.off != int64(i*64) || e.length != 64 {
			t.Fatalf("entry %d = %+v", i, e)
		}
		if e.crc != crc32.Checksum(data[e.off:e.off+e.length], castagnoli) {
			t.Fatalf("entry %d: crc mismatch", i)
		}
	}
	// reseal leaves a valid file valid.
	if _, again, err := parseFile(reseal(data)); err != nil || !slices.Equal(again, entries) {
		t.Fatalf("resealed: %v, %v", again, err)
	}
}

func TestParseRejects(t *testing.T) {
	page := make([]byte, 64)
	entry := func(key string, off, length int64) indexEntry { return indexEntry{key: key, off: off, length: length} }
	for _, c := range []struct {
		name    string
		payload int
		entries []indexEntry
	}{
		{"misaligned offset", 128, []indexEntry{entry("k", 32, 64)}},
		{"past the payload", 64, []indexEntry{entry("k", 64, 64)}},
		{"longer than the payload", 32, []indexEntry{entry("k", 0, 64)}},
		{"zero length", 64, []indexEntry{entry("k", 0, 0)}},
		{"negative length", 64, []indexEntry{entry("k", 0, -64)}},
		{"negative offset", 64, []indexEntry{entry("k", -64, 64)}},
		{"huge offset", 64, []indexEntry{entry("k", 1<<62, 64)}},
		{"huge length", 64, []indexEntry{entry("k", 0, 1<<62)}},
		{"empty key", 64, []indexEntry{entry("", 0, 64)}},
		{"key with '/'", 64, []indexEntry{entry("a/b", 0, 64)}},
		{"key with NUL", 64, []indexEntry{entry("a\x00", 0, 64)}},
		{"key ..", 64, []indexEntry{entry("..", 0, 64)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			payload := slices.Repeat(page, 3)[:c.payload]
			if _, _, err := parseFile(encodeFile(payload, c.entries, 0)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("parse = %v, want ErrCorrupt", err)
			}
		})
	}

	valid := validFile(2, 64)
	body := len(valid) - trailerSize
	for _, c := range []struct {
		name   string
		mutate func([]byte) []byte
	}{
		{"shorter than a trailer", func(d []byte) []byte { return d[len(d)-trailerSize+1:] }},
		{"bad magic", func(d []byte) []byte {
			d[body] = 'X'
			binary.LittleEndian.PutUint32(d[body+52:], crc32.Checksum(d[body:body+52], castagnoli))
			return d
		}},
		{"trailer checksum", func(d []byte) []byte { d[len(d)-1] ^= 1; return d }},
		{"index checksum", func(d []byte) []byte { d[2*64+2] ^= 1; return d }},
		{"version 1", func(d []byte) []byte {
			binary.LittleEndian.PutUint32(d[body+8:], 1)
			binary.LittleEndian.PutUint32(d[body+52:], crc32.Checksum(d[body:body+52], castagnoli))
			return d
		}},
		{"count too large", func(d []byte) []byte {
			binary.LittleEndian.PutUint32(d[body+12:], 3)
			return reseal(d)
		}},
		{"count too small", func(d []byte) []byte {
			binary.LittleEndian.PutUint32(d[body+12:], 1)
			return reseal(d)
		}},
		{"count past the index bytes", func(d []byte) []byte {
			binary.LittleEndian.PutUint32(d[body+12:], 1<<31)
			return reseal(d)
		}},
		{"index off the trailer", func(d []byte) []byte {
			binary.LittleEndian.PutUint64(d[body+16:], 2*64+1)
			binary.LittleEndian.PutUint32(d[body+52:], crc32.Checksum(d[body:body+52], castagnoli))
			return d
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := c.mutate(slices.Clone(valid))
			if _, _, err := parseFile(d); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("parse = %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestAppendInPlace checks that an index encoded in place (appendEntry,
// setEntryCRC, appendTrailer), as BatchSetV1 writes it, is byte for byte
// appendIndex's.
func TestAppendInPlace(t *testing.T) {
	ident := appendIdentity(nil, identity{model: "m", tpSize: 1, ppSize: 1})
	for _, n := range []int{0, 1, 3, 100} {
		entries := make([]indexEntry, n)
		var got []byte
		var starts []int
		for i := range entries {
			entries[i] = indexEntry{key: fmt.Sprint("key-", i*i), off: int64(i) * 512, length: 512, crc: uint32(i*7919 + 1)}
			starts = append(starts, len(got))
			got = appendEntry(got, entries[i].key, entries[i].off, entries[i].length)
		}
		for i, e := range entries {
			setEntryCRC(got[starts[i]:], len(e.key), e.crc)
		}
		got = appendTrailer(got, 0, n, int64(n)*512, 42, ident)
		if want := appendIndex(nil, entries, 42, ident); !bytes.Equal(got, want) {
			t.Fatalf("n=%d: in-place index differs from appendIndex's", n)
		}
	}
}

// TestFNV64a checks fnv64a against hash/fnv, and that identities that
// differ in any field a store compares get different keys.
func TestFNV64a(t *testing.T) {
	for _, in := range []string{"", "a", "hicache identity"} {
		h := fnv.New64a()
		h.Write([]byte(in))
		if got, want := fnv64a([]byte(in)), h.Sum64(); got != want {
			t.Fatalf("fnv64a(%q) = %x, want %x", in, got, want)
		}
	}
	base := identity{model: "m", tpRank: 1, tpSize: 2, ppRank: 0, ppSize: 1}
	for _, other := range []identity{
		{model: "n", tpRank: 1, tpSize: 2, ppSize: 1},
		{model: "m", tpRank: 0, tpSize: 2, ppSize: 1},
		{model: "m", tpRank: 1, tpSize: 4, ppSize: 1},
		{model: "m", tpRank: 1, tpSize: 2, ppRank: 1, ppSize: 2},
		{model: "m", tpRank: 1, tpSize: 2, ppSize: 1, mla: true},
	} {
		if other.key() == base.key() {
			t.Fatalf("%+v and %+v share a key", other, base)
		}
	}
	mla := identity{model: "m", tpRank: 1, tpSize: 2, ppSize: 1, mla: true}
	if other := (identity{model: "m", tpRank: 0, tpSize: 4, ppSize: 1, mla: true}); other.key() != mla.key() {
		t.Fatal("MLA identities that differ only in TP rank and size get different keys")
	}
}

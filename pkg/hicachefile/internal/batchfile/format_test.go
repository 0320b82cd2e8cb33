package batchfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"testing"
)

// encodeFile returns a batch file: payload, then the index of entries and a
// Trailer that says the index starts at len(payload).
func encodeFile(payload []byte, entries []Entry, fp uint64) []byte {
	f := AppendIndex(slices.Clone(payload), entries, fp, nil)
	t := f[len(f)-TrailerSize:]
	binary.LittleEndian.PutUint64(t[16:], uint64(len(payload)))
	binary.LittleEndian.PutUint32(t[52:], crc32.Checksum(t[:52], castagnoli))
	return f
}

// validFile returns a well-formed batch file of n pages of pageLen bytes.
func validFile(n, pageLen int) []byte {
	payload := make([]byte, n*pageLen)
	var entries []Entry
	for i := range n {
		page := payload[i*pageLen : (i+1)*pageLen]
		for j := range page {
			page[j] = byte(i*31 + j)
		}
		entries = append(entries, Entry{Key: string(rune('a'+i)) + "key", Off: int64(i * pageLen), Length: int64(pageLen),
			CRC: crc32.Checksum(page, castagnoli)})
	}
	return encodeFile(payload, entries, 0x1234_5678_9abc_def0)
}

// parseFile parses data as a whole batch file.
func parseFile(data []byte) (Trailer, []Entry, error) {
	tb := data[max(0, len(data)-TrailerSize):]
	t, err := ParseTrailer(tb, int64(len(data)))
	if err != nil {
		return t, nil, err
	}
	entries, err := ParseIndex(data[t.IndexOff:t.IndexOff+t.IndexLen], t)
	return t, entries, err
}

// reseal rewrites data's Trailer so that it passes every Trailer check the
// fuzzer cannot be expected to hit by chance: magic, version, an index that
// ends at the Trailer, and both checksums. The entry count and the index
// bytes stay as the fuzzer made them.
func reseal(data []byte) []byte {
	if len(data) < TrailerSize {
		return data
	}
	d := slices.Clone(data)
	body := uint64(len(d) - TrailerSize)
	t := d[body:]
	copy(t, Magic)
	binary.LittleEndian.PutUint32(t[8:], Version)
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
	if tr.IndexOff < 0 || tr.IndexLen < 0 || tr.IndexOff+tr.IndexLen != size-TrailerSize {
		t.Fatalf("index at %d+%d in a file of %d bytes", tr.IndexOff, tr.IndexLen, size)
	}
	if len(entries) != int(tr.Count) {
		t.Fatalf("%d entries, Trailer says %d", len(entries), tr.Count)
	}
	for _, e := range entries {
		if e.Off < 0 || e.Length <= 0 || e.Off > tr.IndexOff-e.Length || e.Off%e.Length != 0 {
			t.Fatalf("entry %q at %d+%d outside the payload of %d bytes, or misaligned", e.Key, e.Off, e.Length, tr.IndexOff)
		}
		if err := checkKey([]byte(e.Key)); err != nil {
			t.Fatalf("entry with invalid Key: %v", err)
		}
	}
}

func FuzzParseIndex(f *testing.F) {
	valid := validFile(3, 64)
	f.Add(valid)
	f.Add(validFile(0, 64))
	f.Add(validFile(1, 1))
	f.Add(valid[:len(valid)-1])
	f.Add(valid[len(valid)-TrailerSize:])
	f.Add(valid[:10])
	f.Add([]byte{})
	for _, at := range []int{0, 3 * 64, 3*64 + 2, 3*64 + 6, 3*64 + 14, len(valid) - TrailerSize + 12, len(valid) - 1} {
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
	if tr.FP != 0x1234_5678_9abc_def0 || tr.IndexOff != 3*64 || len(entries) != 3 {
		t.Fatalf("Trailer %+v, %d entries", tr, len(entries))
	}
	for i, e := range entries {
		if want := string(rune('a'+i)) + "key"; e.Key != want || e.Off != int64(i*64) || e.Length != 64 {
			t.Fatalf("entry %d = %+v", i, e)
		}
		if e.CRC != crc32.Checksum(data[e.Off:e.Off+e.Length], castagnoli) {
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
	entry := func(key string, off, length int64) Entry { return Entry{Key: key, Off: off, Length: length} }
	for _, c := range []struct {
		name    string
		payload int
		entries []Entry
	}{
		{"misaligned offset", 128, []Entry{entry("k", 32, 64)}},
		{"past the payload", 64, []Entry{entry("k", 64, 64)}},
		{"longer than the payload", 32, []Entry{entry("k", 0, 64)}},
		{"zero length", 64, []Entry{entry("k", 0, 0)}},
		{"negative length", 64, []Entry{entry("k", 0, -64)}},
		{"negative offset", 64, []Entry{entry("k", -64, 64)}},
		{"huge offset", 64, []Entry{entry("k", 1<<62, 64)}},
		{"huge length", 64, []Entry{entry("k", 0, 1<<62)}},
		{"empty key", 64, []Entry{entry("", 0, 64)}},
		{"key with '/'", 64, []Entry{entry("a/b", 0, 64)}},
		{"key with NUL", 64, []Entry{entry("a\x00", 0, 64)}},
		{"key ..", 64, []Entry{entry("..", 0, 64)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			payload := slices.Repeat(page, 3)[:c.payload]
			if _, _, err := parseFile(encodeFile(payload, c.entries, 0)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("parse = %v, want ErrCorrupt", err)
			}
		})
	}

	valid := validFile(2, 64)
	body := len(valid) - TrailerSize
	for _, c := range []struct {
		name   string
		mutate func([]byte) []byte
	}{
		{"shorter than a Trailer", func(d []byte) []byte { return d[len(d)-TrailerSize+1:] }},
		{"bad magic", func(d []byte) []byte {
			d[body] = 'X'
			binary.LittleEndian.PutUint32(d[body+52:], crc32.Checksum(d[body:body+52], castagnoli))
			return d
		}},
		{"Trailer checksum", func(d []byte) []byte { d[len(d)-1] ^= 1; return d }},
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
		{"index off the Trailer", func(d []byte) []byte {
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

// TestAppendInPlace checks that an index encoded in place (AppendEntry,
// SetEntryCRC, AppendTrailer), as BatchSetV1 writes it, is byte for byte
// AppendIndex's.
func TestAppendInPlace(t *testing.T) {
	ident := []byte("an identity: opaque to the format")
	for _, n := range []int{0, 1, 3, 100} {
		entries := make([]Entry, n)
		var got []byte
		var starts []int
		for i := range entries {
			entries[i] = Entry{Key: fmt.Sprint("key-", i*i), Off: int64(i) * 512, Length: 512, CRC: uint32(i*7919 + 1)}
			starts = append(starts, len(got))
			got = AppendEntry(got, entries[i].Key, entries[i].Off, entries[i].Length)
		}
		for i, e := range entries {
			SetEntryCRC(got[starts[i]:], len(e.Key), e.CRC)
		}
		got = AppendTrailer(got, 0, n, int64(n)*512, 42, ident)
		if want := AppendIndex(nil, entries, 42, ident); !bytes.Equal(got, want) {
			t.Fatalf("n=%d: in-place index differs from AppendIndex's", n)
		}
	}
}

// TestSameKey: SameKey tells every key that differs in one byte, or in
// length, from the one in b, for SGLang's 64-byte keys and others.
func TestSameKey(t *testing.T) {
	for _, n := range []int{0, 1, 63, 64, 65, 100} {
		key := make([]byte, n)
		for i := range key {
			key[i] = byte('a' + i%26)
		}
		if !SameKey(key, string(key)) {
			t.Errorf("len %d: a key is not the same as itself", n)
		}
		for i := range key {
			for _, flip := range []byte{1, 0x80, 0xff} {
				other := bytes.Clone(key)
				other[i] ^= flip
				if SameKey(key, string(other)) {
					t.Errorf("len %d: byte %d ^ %#x not told apart", n, i, flip)
				}
			}
		}
		if SameKey(key, string(key)+"x") || n > 0 && SameKey(key, string(key[:n-1])) {
			t.Errorf("len %d: another length not told apart", n)
		}
	}
	// Differences in several words that cancel under a wrong grouping of
	// ^ and |.
	a := bytes.Repeat([]byte{0}, 64)
	b := bytes.Clone(a)
	b[0], b[8] = 1, 1
	if SameKey(a, string(b)) {
		t.Error("two words differing alike not told apart")
	}
}

// TestNextEntryWalksEntryStarts walks an index by its length fields and
// finds every entry start, and refuses an offset whose entry would end past
// the bytes given.
func TestNextEntryWalksEntryStarts(t *testing.T) {
	var ents []byte
	var starts []int64
	for i, k := range []string{"a", "bb", "a-much-longer-key", "c"} {
		starts = append(starts, int64(len(ents)))
		ents = AppendEntry(ents, k, int64(i)*8, 8)
	}
	e := int64(0)
	for i, want := range starts {
		if e != want {
			t.Fatalf("entry %d: walked to %d, want %d", i, e, want)
		}
		e = NextEntry(ents, e)
	}
	if e != int64(len(ents)) {
		t.Fatalf("walk ended at %d, want %d", e, len(ents))
	}
	for _, bad := range []int64{-1, int64(len(ents)), int64(len(ents)) - 1} {
		if got := NextEntry(ents, bad); got != -1 {
			t.Errorf("NextEntry(%d) = %d, want -1", bad, got)
		}
	}
	if !Match(ents, starts[2], "a-much-longer-key", 16, 8) || Match(ents, starts[2]+1, "a-much-longer-key", 16, 8) {
		t.Error("Match does not tell the entry start")
	}
}

// TestPlainKey pins PlainKey to a byte-by-byte scan for '/' and NUL.
func TestPlainKey(t *testing.T) {
	for n := range 40 {
		for i := range n {
			for _, c := range []byte{0, '/', '.', 0x80, 0xff, 1, 0x2e, 0x30, 0x2f ^ 0x80} {
				b := bytes.Repeat([]byte{'k'}, n)
				b[i] = c
				want := c != 0 && c != '/'
				if got := PlainKey(string(b)); got != want {
					t.Errorf("PlainKey(%q) = %v, want %v", b, got, want)
				}
			}
		}
	}
}

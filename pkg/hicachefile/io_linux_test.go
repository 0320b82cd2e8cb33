//go:build linux

package hicachefile

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// pwritevFull and preadvFull drive the real system calls through vectored,
// as the store's Syscalls do.
func pwritevFull(fd int, bufs [][]byte, off int64) error {
	return vectored(unix.Pwritev, fd, bufs, off)
}

func preadvFull(fd int, bufs [][]byte, off int64) error {
	return vectored(unix.Preadv, fd, bufs, off)
}

// openFile creates a file in a temp directory and returns it with its fd.
func openFile(t *testing.T) (*os.File, int) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f, int(f.Fd())
}

// scatter returns n buffers of random lengths in [0, maxLen], with every
// third one empty, holding random bytes.
func scatter(r *rand.Rand, n, maxLen int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		if i%3 == 1 {
			bufs[i] = []byte{}
			continue
		}
		bufs[i] = make([]byte, r.IntN(maxLen+1))
		for j := range bufs[i] {
			bufs[i][j] = byte(r.Uint32())
		}
	}
	return bufs
}

// shapeOf returns new zeroed buffers of the lengths of bufs.
func shapeOf(bufs [][]byte) [][]byte {
	out := make([][]byte, len(bufs))
	for i, b := range bufs {
		out[i] = make([]byte, len(b))
	}
	return out
}

func TestVectoredManyIovecs(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, maxIovecs - 1, maxIovecs, maxIovecs + 1, 3*maxIovecs + 7} {
		f, fd := openFile(t)
		bufs := scatter(r, n, 9)
		lens := make([]int, n)
		for i, b := range bufs {
			lens[i] = len(b)
		}
		const off = 5
		if err := pwritevFull(fd, bufs, off); err != nil {
			t.Fatalf("%d iovecs: pwritevFull: %v", n, err)
		}
		for i, b := range bufs {
			if len(b) != lens[i] {
				t.Fatalf("pwritevFull changed the caller's buffer %d", i)
			}
		}
		got, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		want := append(make([]byte, off), bytes.Join(bufs, nil)...)
		if !bytes.Equal(got, want) {
			t.Fatalf("%d iovecs: file holds %d bytes, want %d, or they differ", n, len(got), len(want))
		}

		back := shapeOf(bufs)
		if err := preadvFull(fd, back, off); err != nil {
			t.Fatalf("%d iovecs: preadvFull: %v", n, err)
		}
		for i := range bufs {
			if !bytes.Equal(back[i], bufs[i]) {
				t.Fatalf("%d iovecs: buffer %d read back differs", n, i)
			}
		}
		runtime.KeepAlive(f)
	}
}

func TestVectoredZeroLength(t *testing.T) {
	f, fd := openFile(t)
	for _, bufs := range [][][]byte{nil, {}, {{}}, {{}, nil, {}}, make([][]byte, 2*maxIovecs)} {
		if err := pwritevFull(fd, bufs, 0); err != nil {
			t.Fatalf("pwritevFull(%d empty buffers) = %v", len(bufs), err)
		}
		if err := preadvFull(fd, bufs, 1<<20); err != nil {
			t.Fatalf("preadvFull(%d empty buffers) past EOF = %v", len(bufs), err)
		}
	}
	if st, _ := f.Stat(); st.Size() != 0 {
		t.Fatalf("file grew to %d bytes", st.Size())
	}
	// Empty buffers around and between data.
	bufs := [][]byte{{}, []byte("ab"), {}, {}, []byte("c"), {}}
	if err := pwritevFull(fd, bufs, 0); err != nil {
		t.Fatal(err)
	}
	back := shapeOf(bufs)
	if err := preadvFull(fd, back, 0); err != nil || string(bytes.Join(back, nil)) != "abc" {
		t.Fatalf("read back %q, %v", bytes.Join(back, nil), err)
	}
	runtime.KeepAlive(f)
}

func TestPreadvShort(t *testing.T) {
	f, fd := openFile(t)
	if err := pwritevFull(fd, [][]byte{bytes.Repeat([]byte{7}, 100)}, 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		bufs [][]byte
		off  int64
		want error
	}{
		{"whole file", [][]byte{make([]byte, 100)}, 0, nil},
		{"tail", [][]byte{make([]byte, 3), {}, make([]byte, 2)}, 95, nil},
		{"one byte past EOF", [][]byte{make([]byte, 101)}, 0, io.ErrUnexpectedEOF},
		{"across EOF in the second buffer", [][]byte{make([]byte, 90), make([]byte, 20)}, 0, io.ErrUnexpectedEOF},
		{"at EOF", [][]byte{make([]byte, 1)}, 100, io.ErrUnexpectedEOF},
		{"far past EOF", [][]byte{make([]byte, 10)}, 1 << 30, io.ErrUnexpectedEOF},
		{"many iovecs across EOF", shapeOf(scatter(rand.New(rand.NewPCG(3, 4)), 2*maxIovecs, 4)), 0, io.ErrUnexpectedEOF},
	} {
		err := preadvFull(fd, c.bufs, c.off)
		if !errors.Is(err, c.want) || (c.want == nil && err != nil) {
			t.Errorf("%s: preadvFull = %v, want %v", c.name, err, c.want)
		}
	}
	runtime.KeepAlive(f)
}

// TestVectoredLoop drives vectored with a fake system call that moves few
// bytes at a time and is interrupted now and then, as a signal-heavy
// process or a slow device would see, and checks the kernel's iovec limit.
func TestVectoredLoop(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	src := scatter(r, 2500, 13)
	file := bytes.Join(src, nil)
	const base = 11
	file = append(make([]byte, base), file...)

	calls, intr := 0, 0
	read := func(_ int, iov [][]byte, off int64) (int, error) {
		calls++
		if len(iov) == 0 || len(iov) > maxIovecs {
			t.Fatalf("call with %d iovecs", len(iov))
		}
		if calls%5 == 0 {
			intr++
			return 0, unix.EINTR
		}
		budget := 1 + r.IntN(40) // a short transfer
		n := 0
		for _, b := range iov {
			k := copy(b[:min(len(b), budget-n)], file[off+int64(n):])
			n += k
			if n == budget || k < len(b) {
				break
			}
		}
		return n, nil
	}
	dst := shapeOf(src)
	if err := vectored(read, -1, dst, base); err != nil {
		t.Fatal(err)
	}
	for i := range src {
		if !bytes.Equal(dst[i], src[i]) {
			t.Fatalf("buffer %d differs after %d calls", i, calls)
		}
	}
	if intr == 0 {
		t.Fatal("no call was interrupted")
	}

	// A failing call ends the loop with its error.
	fail := func(int, [][]byte, int64) (int, error) { return 0, unix.EIO }
	if err := vectored(fail, -1, shapeOf(src), 0); !errors.Is(err, unix.EIO) {
		t.Fatalf("vectored = %v, want EIO", err)
	}
	// A call that moves nothing is io.ErrUnexpectedEOF, not a spin.
	stuck := func(int, [][]byte, int64) (int, error) { return 0, nil }
	if err := vectored(stuck, -1, [][]byte{make([]byte, 1)}, 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("vectored = %v, want io.ErrUnexpectedEOF", err)
	}
}

// TestOpenatRawLikeOpenat: openatRaw, the default Syscalls.Openat,
// returns what unix.Openat returns, errors comparable with ==, for the
// names that unix.Openat treats apart: a NUL inside, 255 and 256 bytes,
// empty, missing, existing with O_EXCL, a directory opened for writing,
// a symlink with O_NOFOLLOW.
func TestOpenatRawLikeOpenat(t *testing.T) {
	dir := t.TempDir()
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Close(dfd) }()
	long255 := strings.Repeat("a", 255)
	if err := os.WriteFile(filepath.Join(dir, long255), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	rd := unix.O_RDONLY | unix.O_CLOEXEC
	for _, c := range []struct {
		name, path string
		flags      int
		want       error
	}{
		{"255 bytes", long255, rd, nil},
		{"256 bytes", strings.Repeat("a", 256), rd, unix.ENAMETOOLONG},
		{"NUL inside", "f\x00x", rd, unix.EINVAL},
		{"NUL at the end", "f\x00", rd, unix.EINVAL},
		{"empty", "", rd, unix.ENOENT},
		{"missing", "nope", rd, unix.ENOENT},
		{"O_EXCL over a file", "f", unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC, unix.EEXIST},
		{"directory for writing", "d", unix.O_WRONLY | unix.O_CLOEXEC, unix.EISDIR},
		{"symlink, O_NOFOLLOW", "l", rd | unix.O_NOFOLLOW, unix.ELOOP},
		{"path through a file", "f/x", rd, unix.ENOTDIR},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, open := range []struct {
				name string
				f    func(int, string, int, uint32) (int, error)
			}{{"openatRaw", openatRaw}, {"unix.Openat", unix.Openat}} {
				fd, err := open.f(dfd, c.path, c.flags, 0o644)
				if err != c.want {
					t.Errorf("%s = %d, %v; want error %v", open.name, fd, err, c.want)
				}
				if err == nil {
					_ = unix.Close(fd)
				}
			}
		})
	}
}

// TestOpenatRawLargeFile: openatRaw opens a file of more than 2 GiB.
// unix.Openat adds O_LARGEFILE, which 32-bit kernels (GOARCH=386, arm)
// need for such a file: without it the open fails with EOVERFLOW. Run
// with GOARCH=386 to see it.
func TestOpenatRawLargeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(3 << 30); err != nil { // sparse
		t.Skip("no room for a sparse 3 GiB file:", err)
	}
	_ = f.Close()
	fd, err := openatRaw(unix.AT_FDCWD, path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("openatRaw of a 3 GiB file: %v", err)
	}
	_ = unix.Close(fd)
}

// TestVectoredPastFourGiB: preadvRaw and pwritevRaw move bytes at an
// offset past 4 GiB, where a 32-bit kernel takes the offset's high word
// from a system call argument of its own.
func TestVectoredPastFourGiB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	const off = 5<<30 + 3
	fd := int(f.Fd())
	if err := vectored(pwritevRaw, fd, [][]byte{[]byte("abc"), []byte("de")}, off); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := unix.Pread(fd, got, off); err != nil || string(got) != "abcde" {
		t.Fatalf("pwritevRaw at 5 GiB: pread finds %q, %v", got, err)
	}
	if _, err := unix.Pwrite(fd, []byte("xyz"), off+8); err != nil {
		t.Fatal(err)
	}
	a, b := make([]byte, 1), make([]byte, 2)
	if err := vectored(preadvRaw, fd, [][]byte{a, b}, off+8); err != nil || string(a)+string(b) != "xyz" {
		t.Fatalf("preadvRaw at 5 GiB = %q, %v; want xyz", string(a)+string(b), err)
	}
}

// TestPreadNowaitPastFourGiB: preadNowait, which loads batch file
// indexes, reads at an offset past 4 GiB (see TestVectoredPastFourGiB).
func TestPreadNowaitPastFourGiB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	const off = 5<<30 + 3
	if _, err := f.WriteAt([]byte("abc"), off); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 3)
	if n, err := preadNowait(int(f.Fd()), got, off); err != unix.EAGAIN && (err != nil || n != 3 || string(got) != "abc") {
		t.Fatalf("preadNowait at 5 GiB = %d, %q, %v; want abc", n, got, err)
	}
}

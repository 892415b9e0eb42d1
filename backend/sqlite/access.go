package sqlite

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	msqlite "modernc.org/sqlite"
)

// ErrReadOnly is wrapped by Open when this process may read the store's
// file but may not write it or its directory (open it with
// Options.ReadOnly to inspect it), and by every write of a store opened
// ReadOnly.
var ErrReadOnly = errors.New("read-only")

// SQLite's result codes that opening a file may meet.
const (
	codeReadOnly          = 8    // SQLITE_READONLY
	codeCantOpen          = 14   // SQLITE_CANTOPEN
	codeReadOnlyDirectory = 1544 // SQLITE_READONLY_DIRECTORY
)

// sqliteCode returns the SQLite result code of err, or 0.
func sqliteCode(err error) int {
	var se *msqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

// accessError explains, in words and with the access needed, an error of
// opening the store at abs: SQLite's own messages ("unable to open
// database file (14)", "attempt to write a readonly database (1544)") say
// neither what is wrong nor what to do. Other errors are returned as they
// are.
func accessError(abs string, err error) error {
	code := sqliteCode(err)
	if code&0xff != codeCantOpen && code&0xff != codeReadOnly {
		return err
	}
	dir := filepath.Dir(abs)
	st, derr := os.Stat(dir)
	switch {
	case errors.Is(derr, fs.ErrNotExist):
		return fmt.Errorf("the directory %s does not exist", dir)
	case derr != nil:
		return fmt.Errorf("cannot reach the directory %s: %w", dir, derr)
	case !st.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	fst, ferr := os.Stat(abs)
	switch {
	case ferr == nil && fst.IsDir():
		return fmt.Errorf("%s is a directory, not a store file", abs)
	case ferr == nil && !canOpen(abs, os.O_RDONLY):
		return fmt.Errorf("this user may not read %s: it needs read access to the file, and write access to it and to %s to change it", abs, dir)
	case !canCreateIn(dir):
		return fmt.Errorf("%w: this user may not write the directory %s, where SQLite keeps the store's journal (%s-wal, %s-shm); "+
			"commands that change the store need write access to it and to the file", ErrReadOnly, dir, filepath.Base(abs), filepath.Base(abs))
	case ferr == nil && !canOpen(abs, os.O_WRONLY):
		return fmt.Errorf("%w: this user may not write %s; commands that change the store need write access to it", ErrReadOnly, abs)
	case code == codeReadOnlyDirectory:
		return fmt.Errorf("%w: SQLite may not create its journal (%s-wal, %s-shm) in %s; give write access to the directory",
			ErrReadOnly, filepath.Base(abs), filepath.Base(abs), dir)
	case code&0xff == codeReadOnly:
		return fmt.Errorf("%w: SQLite may not write %s (%v)", ErrReadOnly, abs, err)
	}
	return fmt.Errorf("SQLite cannot open %s (%v)", abs, err)
}

// canOpen reports whether this process may open the file with flag
// (O_RDONLY or O_WRONLY; nothing is written).
func canOpen(path string, flag int) bool {
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return false
	}
	_ = f.Close()
	return true
}

// canCreateIn reports whether this process may create files in dir.
func canCreateIn(dir string) bool {
	f, err := os.CreateTemp(dir, ".duro-access-*")
	if err != nil {
		return false
	}
	_ = f.Close()
	_ = os.Remove(f.Name())
	return true
}

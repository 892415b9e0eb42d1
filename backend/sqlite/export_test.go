package sqlite

// WALSyncs counts the backend's explicit syncs of the WAL file
// (synchronous=NORMAL), for the tests of package sqlite_test.
func WALSyncs(b *Backend) int64 { return b.walSyncs.Load() }

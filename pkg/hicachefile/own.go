//go:build linux

package hicachefile

// expectOwn records that this store is about to link a batch file of its
// own under name, so that the watcher's event for that link is known as
// this store's without a stat. Only a store that reads its watcher's
// events records it.
func (s *Store) expectOwn(name string) {
	if s.poll.Load() {
		return
	}
	s.inflight.mu.Lock()
	defer s.inflight.mu.Unlock()
	if len(s.inflight.own) >= maxOwn {
		clear(s.inflight.own)
	}
	s.inflight.own[name] = true
}

// takeOwn reports whether name's appearance, an event the watcher read,
// is the one expectOwn expected, the link of this store's own file. While
// that file's commit is in flight, the name stays, marked as seen (false),
// so that a second appearance is known for what it is: another file put
// under the name (renamed or linked over this store's), which the commit
// then forgets instead of indexing this store's file under it.
func (s *Store) takeOwn(name string) bool {
	s.inflight.mu.Lock()
	defer s.inflight.mu.Unlock()
	expected, ok := s.inflight.own[name]
	_, inflight := s.inflight.names[name]
	switch {
	case !ok:
		return false
	case !expected:
		delete(s.inflight.own, name)
		if inflight {
			s.inflight.names[name] = true // as if removed: the commit forgets it
		}
		return false
	case inflight:
		s.inflight.own[name] = false
	default:
		delete(s.inflight.own, name)
	}
	return true
}

// dropOwn forgets that name's event is expected: its link failed, or the
// file is gone.
func (s *Store) dropOwn(name string) {
	s.inflight.mu.Lock()
	defer s.inflight.mu.Unlock()
	delete(s.inflight.own, name)
}

// forgetOwn forgets every expected event: after a lost or overflowed watch,
// which a listing replaces.
func (s *Store) forgetOwn() {
	s.inflight.mu.Lock()
	defer s.inflight.mu.Unlock()
	clear(s.inflight.own)
}

// inflightBegin records that this store is committing the batch file name.
func (s *Store) inflightBegin(name string) {
	s.inflight.mu.Lock()
	s.inflight.names[name] = false
	s.inflight.mu.Unlock()
}

// inflightEnd ends the commit of name and reports whether its removal was
// seen meanwhile.
func (s *Store) inflightEnd(name string) bool {
	s.inflight.mu.Lock()
	defer s.inflight.mu.Unlock()
	gone := s.inflight.names[name]
	delete(s.inflight.names, name)
	if expected, ok := s.inflight.own[name]; ok && !expected {
		delete(s.inflight.own, name) // its link's event seen (takeOwn)
	}
	return gone
}

// isInflight reports whether this store is committing the batch file name.
func (s *Store) isInflight(name string) bool {
	s.inflight.mu.Lock()
	defer s.inflight.mu.Unlock()
	_, ok := s.inflight.names[name]
	return ok
}

// goneInFlight reports whether name, whose removal an event reports, is
// being committed by this store, and if so marks it for its commit to
// forget.
func (s *Store) goneInFlight(name string) bool {
	s.inflight.mu.Lock()
	defer s.inflight.mu.Unlock()
	if _, ok := s.inflight.names[name]; ok {
		s.inflight.names[name] = true
		return true
	}
	return false
}

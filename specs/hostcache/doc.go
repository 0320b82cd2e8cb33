// Package hostcache holds the behaviour specs of pkg/hostcache: the seed's
// get_page_buffer_meta cases for MHA and MLA, flat page round trips, and one
// spec per bad-input error. It is an ordinary package whose specs register at
// init; the root suite_test.go pulls it in with a blank import.
package hostcache

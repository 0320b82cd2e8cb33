// Package hicachefile holds the behaviour specs of pkg/hicachefile: the
// seed's get_page_buffer_meta integration case for MHA and MLA, byte-exact
// round trips through both interfaces for every layout, restart and sharing,
// SGLang file compatibility, corruption, and the errors of bad calls. It is
// an ordinary package whose specs register at init; the root suite_test.go
// pulls it in with a blank import.
package hicachefile

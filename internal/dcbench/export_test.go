package dcbench

// SameMembers exposes sameMembers to the tests.
var SameMembers = sameMembers

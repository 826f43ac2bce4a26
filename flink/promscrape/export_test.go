package promscrape

// Wanted is wanted, for the benchmark that runs textparse the way Parse used to.
var Wanted = wanted

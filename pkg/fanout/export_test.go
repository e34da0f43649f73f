package fanout

// KindProbe lets the wire tests name the probe's kind, which no caller
// outside the package may send.
const KindProbe = kindProbe

// Package js embeds the JavaScript client so that every node serves it at
// /v1/herald.js.
package js

import _ "embed"

// Source is herald.js.
//
//go:embed herald.js
var Source []byte

// Types is herald.d.ts.
//
//go:embed herald.d.ts
var Types []byte

package httpapi

import (
	_ "embed"
	"slices"
)

//go:embed openapi.json
var openapiJSON []byte

// OpenAPI returns the OpenAPI 3.1 description of the HTTP API, served at
// /v1/openapi.json.
func OpenAPI() []byte { return slices.Clone(openapiJSON) }

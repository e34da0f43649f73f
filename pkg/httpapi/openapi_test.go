package httpapi_test

import (
	"os"
	"testing"

	"github.com/herald-push/herald/internal/apitest"
)

func TestMain(m *testing.M) { os.Exit(apitest.Main(m)) }

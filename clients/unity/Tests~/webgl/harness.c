// A stand-in for a Unity WebGL player: it calls HeraldWebSocket.jslib's
// functions exactly as IL2CPP's [DllImport("__Internal")] does — UTF-8
// strings by pointer, callbacks as C function pointers — and records each
// callback in the page's window.heraldLog for webgl_test.go to read.
#include <emscripten.h>
#include <string.h>

typedef void (*open_fn)(int socket);
typedef void (*text_fn)(int socket, const char *utf8, int byte_length);
typedef void (*close_fn)(int socket, int code, const char *reason, int refused, int retry_after_ms);

extern void HeraldWs_SetCallbacks(open_fn on_open, text_fn on_text, close_fn on_close);
extern int HeraldWs_Open(const char *url, const char *token);
extern int HeraldWs_Send(int socket, const char *text);
extern void HeraldWs_Close(int socket, int code, const char *reason);
extern void HeraldWs_ScheduleClose(int socket, int delay_ms, int code, const char *reason);
extern void HeraldWs_CancelScheduledClose(int socket);
extern void HeraldWs_Free(int socket);

static void on_open(int socket) {
	EM_ASM({ heraldLog.push({ ev: "open", socket: $0 }); }, socket);
}

static void on_text(int socket, const char *utf8, int byte_length) {
	// The length is the library's word: check it against the bytes, as
	// C# would copy exactly byte_length of them.
	EM_ASM({ heraldLog.push({ ev: "text", socket: $0, text: UTF8ToString($1, $2), bytes: $2, terminated: $3 }); },
	       socket, utf8, byte_length, (int)strlen(utf8) == byte_length);
}

static void on_close(int socket, int code, const char *reason, int refused, int retry_after_ms) {
	EM_ASM({ heraldLog.push({ ev: "close", socket: $0, code: $1, reason: UTF8ToString($2), refused: $3, retryAfterMs: $4 }); },
	       socket, code, reason, refused, retry_after_ms);
}

EMSCRIPTEN_KEEPALIVE int harness_open(const char *url, const char *token) {
	return HeraldWs_Open(url, token && *token ? token : 0);
}

EMSCRIPTEN_KEEPALIVE int harness_send(int socket, const char *text) { return HeraldWs_Send(socket, text); }

EMSCRIPTEN_KEEPALIVE void harness_close(int socket, int code, const char *reason) { HeraldWs_Close(socket, code, reason); }

EMSCRIPTEN_KEEPALIVE void harness_schedule_close(int socket, int delay_ms, int code, const char *reason) {
	HeraldWs_ScheduleClose(socket, delay_ms, code, reason);
}

EMSCRIPTEN_KEEPALIVE void harness_cancel_close(int socket) { HeraldWs_CancelScheduledClose(socket); }

EMSCRIPTEN_KEEPALIVE void harness_free(int socket) { HeraldWs_Free(socket); }

int main(void) {
	HeraldWs_SetCallbacks(on_open, on_text, on_close);
	EM_ASM({ window.heraldReady = true; });
	return 0;
}

// harness.c calls HeraldWebSocket.jslib exactly as IL2CPP calls it from
// WebGLTransport.cs: UTF-8 strings by pointer, callbacks as C function
// pointers, and (pointer, byteLength) for every frame. Each callback is
// recorded in Module.heraldLog for the Go test to read with chromedp.
#include <emscripten.h>
#include <string.h>

extern void HeraldWs_SetCallbacks(void (*onOpen)(int), void (*onText)(int, const char *, int),
                                  void (*onClose)(int, int, const char *, int, int));
extern int HeraldWs_Open(const char *url, const char *token);
extern int HeraldWs_Send(int socket, const char *text);
extern void HeraldWs_Close(int socket, int code, const char *reason);
extern void HeraldWs_ScheduleClose(int socket, int delayMs, int code, const char *reason);
extern void HeraldWs_CancelScheduledClose(int socket);
extern void HeraldWs_Free(int socket);

static void on_open(int socket) {
  EM_ASM({ Module.heraldLog.push({ ev: "open", socket: $0 }); }, socket);
}

// The bytes are decoded here from (pointer, length) only, as C# does with
// Marshal.Copy: a NUL-terminated read would hide a wrong length.
static void on_text(int socket, const char *utf8, int len) {
  EM_ASM({
    var bytes = HEAPU8.slice($1, $1 + $2);
    Module.heraldLog.push({ ev: "text", socket: $0, bytes: $2, text: new TextDecoder("utf-8").decode(bytes) });
  }, socket, utf8, len);
}

static void on_close(int socket, int code, const char *reason, int refused, int retryAfterMs) {
  EM_ASM({
    Module.heraldLog.push({ ev: "close", socket: $0, code: $1, reason: UTF8ToString($2), refused: $3, retryAfterMs: $4 });
  }, socket, code, reason, refused, retryAfterMs);
}

int main(void) {
  HeraldWs_SetCallbacks(on_open, on_text, on_close);
  return 0;
}

EMSCRIPTEN_KEEPALIVE int harness_open(const char *url, const char *token) {
  return HeraldWs_Open(url, token && token[0] ? token : NULL);
}
EMSCRIPTEN_KEEPALIVE int harness_send(int socket, const char *text) { return HeraldWs_Send(socket, text); }
EMSCRIPTEN_KEEPALIVE void harness_close(int socket, int code, const char *reason) {
  HeraldWs_Close(socket, code, reason);
}
EMSCRIPTEN_KEEPALIVE void harness_schedule_close(int socket, int delayMs, int code, const char *reason) {
  HeraldWs_ScheduleClose(socket, delayMs, code, reason);
}
EMSCRIPTEN_KEEPALIVE void harness_cancel_scheduled_close(int socket) { HeraldWs_CancelScheduledClose(socket); }
EMSCRIPTEN_KEEPALIVE void harness_free(int socket) { HeraldWs_Free(socket); }

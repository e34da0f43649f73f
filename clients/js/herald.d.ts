// Type declarations for herald.js.

export interface HeraldMessage {
  /** Stored messages: "<ms>-<seq>", increasing per key. Others: opaque. */
  id: string;
  key?: string;
  topic?: string;
  data: unknown;
  /** Unix milliseconds. */
  ts: number;
}

export interface HeraldOptions {
  url: string | string[];
  key?: string;
  token?: string;
  tokenProvider?: () => Promise<string> | string;
  topics?: string[];
  autoAck?: boolean;
  since?: string;
  minBackoff?: number;
  maxBackoff?: number;
  /**
   * "auto" (the default): a WebSocket, falling back to Server-Sent Events
   * (GET /v1/sse, acks by POST /v1/ack) when a WebSocket cannot open though
   * the node answers plain HTTP; "sse": Server-Sent Events only;
   * "websocket": never fall back.
   */
  transport?: "auto" | "websocket" | "sse";
  WebSocket?: typeof WebSocket;
  EventSource?: typeof EventSource;
}

export interface HeraldClose {
  code: number;
  reason: string;
  willRetry: boolean;
}

export type HeraldState = "idle" | "connecting" | "open" | "waiting" | "closed";

export declare class HeraldError extends Error {
  status: number;
  code: string;
  closeCode: number;
}

export declare class Herald {
  constructor(options: HeraldOptions);
  readonly state: HeraldState;
  /** Newest stored id of the key's messages handled. */
  readonly lastId: string;
  /** Newest stored id handled per stream: "" for the key, topic names for topics with history. */
  readonly lastIds: Map<string, string>;
  readonly duplicates: number;
  /** The transport of the current or next attempt. */
  readonly transport: "websocket" | "sse";
  on(event: "message", fn: (m: HeraldMessage) => void): () => void;
  on(event: "open", fn: (e: { url: string; transport?: "sse" }) => void): () => void;
  /** WebSockets were found blocked: the client reads Server-Sent Events from now on. */
  on(event: "fallback", fn: (e: { transport: "sse" }) => void): () => void;
  on(event: "close", fn: (e: HeraldClose) => void): () => void;
  on(event: "error", fn: (e: Error | HeraldError) => void): () => void;
  on(event: "state", fn: (s: HeraldState) => void): () => void;
  connect(): this;
  close(): void;
  ack(id: string): void;
}

export declare function compareStoredIds(a: string, b: string): number;
export declare function isStoredId(id: string): boolean;

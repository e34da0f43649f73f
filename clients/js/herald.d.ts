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
  WebSocket?: typeof WebSocket;
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
  on(event: "message", fn: (m: HeraldMessage) => void): () => void;
  on(event: "open", fn: (e: { url: string }) => void): () => void;
  on(event: "close", fn: (e: HeraldClose) => void): () => void;
  on(event: "error", fn: (e: Error | HeraldError) => void): () => void;
  on(event: "state", fn: (s: HeraldState) => void): () => void;
  connect(): this;
  close(): void;
  ack(id: string): void;
}

export declare function compareStoredIds(a: string, b: string): number;
export declare function isStoredId(id: string): boolean;

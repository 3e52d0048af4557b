#!/usr/bin/env node
// failprobe adapter for node-redis (npm `redis`), protocol version 1 (adapters/README.md).
// failprobe starts it with FAILPROBE_TARGET, FAILPROBE_PASSWORD and FAILPROBE_TIMEOUT_MS in the
// environment and speaks JSON lines on stdin/stdout.
//
// The client is built the way an application builds it; these settings mirror a production one
// (unset: node-redis's own default, except where noted):
//
//   NODEREDIS_MODE                 direct | sentinel | cluster (default: from FAILPROBE_TARGET's
//                                  scheme: redis[s]://, redis[s]+sentinel://, redis[s]+cluster://)
//   NODEREDIS_COMMAND_TIMEOUT      ms, commandOptions.timeout (default: FAILPROBE_TIMEOUT_MS;
//                                  node-redis's is 5000; `none`: no timeout)
//   NODEREDIS_REJECT_IN_FLIGHT     true: the timeout also rejects a command already sent and
//                                  waiting for its reply (commandOptions.rejectInFlight, default
//                                  false: the timeout only covers waiting to be sent)
//   NODEREDIS_CONNECT_TIMEOUT      ms, socket.connectTimeout (node-redis default 5000)
//   NODEREDIS_SOCKET_TIMEOUT       ms without data before the socket is closed (default: none)
//   NODEREDIS_RECONNECT_DELAY      ms between reconnects, socket.reconnectStrategy (default:
//                                  node-redis's 2^retries × 50 ms, at most 2 s, + up to 200 ms jitter)
//   NODEREDIS_DISABLE_OFFLINE_QUEUE  true: reject commands while reconnecting (default false)
//   NODEREDIS_PING_INTERVAL        ms between PINGs (default: none)
//   NODEREDIS_RESP                 2 | 3 (node-redis default 3)
//   NODEREDIS_MAX_COMMAND_REDIRECTIONS  cluster: MOVED/ASK/reconnect redirections (default 16)
//   NODEREDIS_MAX_COMMAND_REDISCOVERS   sentinel: retries after a topology change (default 16)
//   NODEREDIS_SENTINEL_SCAN_INTERVAL    sentinel: ms between topology scans (default 0: none)
//   NODEREDIS_MASTER_POOL_SIZE     sentinel: connections to the primary (default 1)
//
// Direct: createClient({socket: {host, port}, ...}). Sentinel: createSentinel({name,
// sentinelRootNodes, nodeClientOptions}). Cluster: createCluster({rootNodes, defaults}).

"use strict";
const readline = require("readline");
const { createClient, createSentinel, createCluster } = require("redis");

const env = (name) => (process.env[name] === undefined || process.env[name] === "" ? undefined : process.env[name]);
const envInt = (name) => (env(name) === undefined ? undefined : parseInt(env(name), 10));
const envBool = (name) => (env(name) === undefined ? undefined : env(name) === "true");

function hosts(netloc, defaultPort) {
  return netloc.split(",").map((part) => {
    const at = part.lastIndexOf(":");
    return at > 0 && !part.endsWith("]")
      ? { host: part.slice(0, at).replace(/^\[|\]$/g, ""), port: parseInt(part.slice(at + 1), 10) }
      : { host: part.replace(/^\[|\]$/g, ""), port: defaultPort };
  });
}

const clean = (o) => {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
};

function build() {
  const target = process.env.FAILPROBE_TARGET;
  const [scheme, rest] = target.split("://");
  const mode = env("NODEREDIS_MODE") || (scheme.includes("+sentinel") ? "sentinel" : scheme.includes("+cluster") ? "cluster" : "direct");
  const tls = scheme.startsWith("rediss") || scheme.startsWith("valkeys");
  const slash = rest.indexOf("/");
  let netloc = slash >= 0 ? rest.slice(0, slash) : rest;
  const path = slash >= 0 ? rest.slice(slash + 1) : "";
  let username;
  if (netloc.includes("@")) {
    username = decodeURIComponent(netloc.slice(0, netloc.lastIndexOf("@")).split(":")[0]) || undefined;
    netloc = netloc.slice(netloc.lastIndexOf("@") + 1);
  }
  // The command timeout follows --timeout, as the other adapters' do; the rest is node-redis's.
  const timeout = env("NODEREDIS_COMMAND_TIMEOUT") === "none" ? undefined : envInt("NODEREDIS_COMMAND_TIMEOUT") ?? envInt("FAILPROBE_TIMEOUT_MS") ?? 5000;
  const rejectInFlight = envBool("NODEREDIS_REJECT_IN_FLIGHT") ?? false;
  // `timeout: undefined` is node-redis's own way to say none (its default 5000 applies only when absent).
  const commandOptions = { timeout, rejectInFlight };
  const socket = clean({
    connectTimeout: envInt("NODEREDIS_CONNECT_TIMEOUT"),
    socketTimeout: envInt("NODEREDIS_SOCKET_TIMEOUT"),
    reconnectStrategy: envInt("NODEREDIS_RECONNECT_DELAY"),
  });
  if (tls) {
    socket.tls = true;
    if (env("FAILPROBE_TLS_CA_FILE")) socket.ca = require("fs").readFileSync(env("FAILPROBE_TLS_CA_FILE"));
  }
  const node = clean({
    username,
    password: env("FAILPROBE_PASSWORD"),
    disableOfflineQueue: envBool("NODEREDIS_DISABLE_OFFLINE_QUEUE"),
    pingInterval: envInt("NODEREDIS_PING_INTERVAL"),
    RESP: envInt("NODEREDIS_RESP"),
    // FAILPROBE_CLIENT_NAME (adapters/README.md): every connection's CLIENT SETNAME (each
    // cluster node's, the primary's and the sentinels' through Sentinel).
    name: env("FAILPROBE_CLIENT_NAME"),
  });
  // Effective values: node-redis's defaults where nothing was set.
  const settings = {
    mode,
    tls,
    commandTimeout: timeout === undefined ? "none" : timeout,
    rejectInFlight,
    connectTimeout: socket.connectTimeout ?? 5000,
    socketTimeout: socket.socketTimeout ?? "none",
    reconnectStrategy: socket.reconnectStrategy ?? "exponential 50 ms..2 s + jitter",
    disableOfflineQueue: node.disableOfflineQueue ?? false,
    pingInterval: node.pingInterval ?? "none",
    RESP: node.RESP ?? 3,
  };
  if (username) settings.username = username;
  if (node.name) settings.client_name = node.name;
  if (mode === "cluster") {
    const maxCommandRedirections = envInt("NODEREDIS_MAX_COMMAND_REDIRECTIONS");
    settings.maxCommandRedirections = maxCommandRedirections ?? 16;
    const cluster = createCluster(
      clean({
        rootNodes: hosts(netloc, 6379).map((h) => ({ socket: h })),
        defaults: { ...node, socket },
        commandOptions,
        maxCommandRedirections,
        RESP: node.RESP,
      }),
    );
    return [cluster, settings];
  }
  if (mode === "sentinel") {
    const [name, db] = path.split("/");
    const options = clean({
      name,
      sentinelRootNodes: hosts(netloc, 26379),
      nodeClientOptions: { ...node, database: parseInt(db || "0", 10), socket },
      sentinelClientOptions: clean({ password: env("FAILPROBE_SENTINEL_PASSWORD"), name: node.name, socket, RESP: node.RESP }),
      commandOptions,
      maxCommandRediscovers: envInt("NODEREDIS_MAX_COMMAND_REDISCOVERS"),
      scanInterval: envInt("NODEREDIS_SENTINEL_SCAN_INTERVAL"),
      masterPoolSize: envInt("NODEREDIS_MASTER_POOL_SIZE"),
      RESP: node.RESP,
    });
    Object.assign(settings, {
      name,
      maxCommandRediscovers: options.maxCommandRediscovers ?? 16,
      scanInterval: options.scanInterval ?? 0,
      masterPoolSize: options.masterPoolSize ?? 1,
    });
    return [createSentinel(options), settings];
  }
  const [{ host, port }] = hosts(netloc, 6379);
  return [createClient({ ...node, database: parseInt(path || "0", 10), socket: { ...socket, host, port }, commandOptions }), settings];
}

function kind(err) {
  const name = (err && err.constructor && err.constructor.name) || "";
  const m = String(err && err.message);
  // ErrorReply, SimpleError, BlobError: the server's own answer (READONLY, MOVED, …).
  if (/ErrorReply|SimpleError|BlobError/.test(name)) return "server";
  if (/Timeout/.test(name) || /timed? ?out/i.test(m)) return "timeout";
  if (/Closed|Offline|Disconnects|Socket|Reconnect|RootNodes|Redirections/.test(name) || /ECONN|EPIPE|closed|offline|connect|unavailable/i.test(m)) {
    return "connection";
  }
  return "other";
}

function value(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === "number") return v;
  return String(v);
}

const [client, settings] = build();
// node-redis reports connection trouble as 'error' events; the answers carry it already.
client.on("error", () => {});
const send = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

// An application's calls: EVAL and GET as its typed commands (the cluster routes them by their
// keys), anything else through sendCommand.
function execute([command, ...args]) {
  switch (command.toUpperCase()) {
    case "EVAL": {
      const n = parseInt(args[1], 10);
      return client.eval(args[0], { keys: args.slice(2, 2 + n), arguments: args.slice(2 + n) });
    }
    case "GET":
      return client.get(args[0]);
  }
  return mode === "direct" ? client.sendCommand([command, ...args]) : client.sendCommand(args[0], false, [command, ...args]);
}
const mode = settings.mode;

async function main() {
  // Connected before the hello, as an application is before it serves: the primary found
  // through Sentinel, the cluster's slots known.
  try {
    await client.connect();
  } catch (err) {
    process.stderr.write(`node-redis adapter: could not connect to ${process.env.FAILPROBE_TARGET}: ${err}\n`);
    process.exit(2);
  }
  send({ hello: 2, client: "node-redis", version: require("redis/package.json").version, settings });
  const inFlight = new Set();
  // Protocol 2: direct, a duplicate client of its own in subscriber mode, as the library's
  // guide has it; Sentinel, the sentinel client's own subscribe (its pub/sub connection).
  // node-redis subscribes again after a reconnect.
  const subscriptions = new Map();
  const subscribe = async (channel) => {
    const sub = mode === "direct" ? client.duplicate() : client;
    if (sub !== client) {
      sub.on("error", () => {});
      await sub.connect();
    }
    subscriptions.set(channel, sub);
    await sub.subscribe(channel, (payload) => send({ msg: channel, payload: String(payload) }));
  };
  const unsubscribe = async (channel) => {
    const sub = subscriptions.get(channel);
    subscriptions.delete(channel);
    if (!sub) return;
    if (sub === client) await sub.unsubscribe(channel).catch(() => {});
    else sub.destroy();
  };
  const onSubscription = (req) => {
    const done = req.subscribe !== undefined ? subscribe(req.subscribe) : unsubscribe(req.unsubscribe);
    done.catch((err) => process.stderr.write(`node-redis adapter: ${err}\n`));
  };
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on("line", (line) => {
    const req = JSON.parse(line);
    if (req.subscribe !== undefined || req.unsubscribe !== undefined) return onSubscription(req);
    const p = Promise.resolve()
      .then(() => execute(req.cmd))
      .then((v) => send({ id: req.id, ok: true, value: value(v) }))
      .catch((err) => send({ id: req.id, ok: false, kind: kind(err), error: `${err.constructor.name}: ${err.message}` }))
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  });
  lines.on("close", async () => {
    // stdin closed: failprobe is done; finish what is in flight, then leave.
    await Promise.race([Promise.allSettled([...inFlight]), new Promise((r) => setTimeout(r, 1500))]);
    for (const [, sub] of subscriptions) if (sub !== client) sub.destroy();
    try {
      client.destroy();
    } catch (_) {}
    process.exit(0);
  });
}

main();

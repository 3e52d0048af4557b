#!/usr/bin/env node
// failprobe adapter for ioredis, protocol version 1 (adapters/README.md).
// failprobe starts it with FAILPROBE_TARGET, FAILPROBE_PASSWORD and FAILPROBE_TIMEOUT_MS in the
// environment and speaks JSON lines on stdin/stdout.
//
// The client is built the way an application builds it; these settings mirror a production one
// (unset: ioredis's own default, except where noted):
//
//   IOREDIS_MODE                    direct | sentinel | cluster (default: from FAILPROBE_TARGET's
//                                   scheme: redis[s]://, redis[s]+sentinel://, redis[s]+cluster://)
//   IOREDIS_COMMAND_TIMEOUT         ms per command (default: FAILPROBE_TIMEOUT_MS; `none`: no timeout)
//   IOREDIS_CONNECT_TIMEOUT         ms to connect (ioredis default 10000)
//   IOREDIS_MAX_RETRIES_PER_REQUEST retries of a command across reconnects (ioredis default 20)
//   IOREDIS_ENABLE_OFFLINE_QUEUE    true | false: queue commands while disconnected (default true)
//   IOREDIS_RECONNECT_ON_READONLY   true: reconnect on READONLY (the documented `reconnectOnError`
//                                   recipe for failovers behind an endpoint; default false)
//   IOREDIS_CLUSTER_SLOTS_REFRESH_INTERVAL  ms between cluster slot refreshes (ioredis default 5000)
//
// Direct: new Redis({host, port, db, ...}). Sentinel: new Redis({sentinels, name, ...}).
// Cluster: new Redis.Cluster(nodes, {redisOptions}).

"use strict";
const readline = require("readline");
const Redis = require("ioredis");

const env = (name) => (process.env[name] === undefined || process.env[name] === "" ? undefined : process.env[name]);
const envInt = (name) => (env(name) === undefined ? undefined : parseInt(env(name), 10));

function hosts(netloc, defaultPort) {
  return netloc.split(",").map((part) => {
    const at = part.lastIndexOf(":");
    return at > 0 && !part.endsWith("]")
      ? { host: part.slice(0, at).replace(/^\[|\]$/g, ""), port: parseInt(part.slice(at + 1), 10) }
      : { host: part.replace(/^\[|\]$/g, ""), port: defaultPort };
  });
}

function build() {
  const target = process.env.FAILPROBE_TARGET;
  const [scheme, rest] = target.split("://");
  const mode = env("IOREDIS_MODE") || (scheme.includes("+sentinel") ? "sentinel" : scheme.includes("+cluster") ? "cluster" : "direct");
  const tls = scheme.startsWith("rediss") || scheme.startsWith("valkeys");
  const slash = rest.indexOf("/");
  let netloc = slash >= 0 ? rest.slice(0, slash) : rest;
  const path = slash >= 0 ? rest.slice(slash + 1) : "";
  let username;
  if (netloc.includes("@")) {
    username = decodeURIComponent(netloc.slice(0, netloc.lastIndexOf("@")).split(":")[0]) || undefined;
    netloc = netloc.slice(netloc.lastIndexOf("@") + 1);
  }
  const timeout = env("IOREDIS_COMMAND_TIMEOUT") === "none" ? undefined : envInt("IOREDIS_COMMAND_TIMEOUT") ?? envInt("FAILPROBE_TIMEOUT_MS");
  const options = {
    username,
    password: env("FAILPROBE_PASSWORD"),
    commandTimeout: timeout,
    connectTimeout: envInt("IOREDIS_CONNECT_TIMEOUT"),
    maxRetriesPerRequest: envInt("IOREDIS_MAX_RETRIES_PER_REQUEST"),
    enableOfflineQueue: env("IOREDIS_ENABLE_OFFLINE_QUEUE") === undefined ? undefined : env("IOREDIS_ENABLE_OFFLINE_QUEUE") === "true",
    // FAILPROBE_CLIENT_NAME (adapters/README.md): each data connection's CLIENT SETNAME. ioredis
    // names a cluster's slot-refresh and subscriber connections `ioredis-cluster(refresher):NAME`
    // and `ioredis-cluster(subscriber):NAME`, and leaves its Sentinel connections unnamed.
    connectionName: env("FAILPROBE_CLIENT_NAME"),
  };
  if (env("IOREDIS_RECONNECT_ON_READONLY") === "true") {
    options.reconnectOnError = (err) => (err.message.startsWith("READONLY") ? 2 : false);
  }
  if (tls) {
    options.tls = env("FAILPROBE_TLS_CA_FILE") ? { ca: require("fs").readFileSync(env("FAILPROBE_TLS_CA_FILE")) } : {};
  }
  for (const k of Object.keys(options)) if (options[k] === undefined) delete options[k];
  const settings = { mode, ...options };
  delete settings.password;
  if (settings.reconnectOnError) settings.reconnectOnError = "READONLY";
  if (settings.tls) settings.tls = true;
  if (settings.connectionName) {
    settings.client_name = settings.connectionName;
    delete settings.connectionName;
  }
  if (mode === "cluster") {
    const clusterOptions = { redisOptions: options };
    const refresh = envInt("IOREDIS_CLUSTER_SLOTS_REFRESH_INTERVAL");
    if (refresh !== undefined) {
      clusterOptions.slotsRefreshInterval = refresh;
      settings.slotsRefreshInterval = refresh;
    }
    return [new Redis.Cluster(hosts(netloc, 6379), clusterOptions), settings];
  }
  if (mode === "sentinel") {
    const [name, db] = path.split("/");
    settings.name = name;
    const sentinelPassword = env("FAILPROBE_SENTINEL_PASSWORD");
    return [new Redis({ sentinels: hosts(netloc, 26379), name, db: parseInt(db || "0", 10), sentinelPassword, ...options }), settings];
  }
  const [{ host, port }] = hosts(netloc, 6379);
  return [new Redis({ host, port, db: parseInt(path || "0", 10), ...options }), settings];
}

function kind(err) {
  const m = String(err && err.message);
  if (err && err.name === "ReplyError") return "server";
  if (/timed out|timeout/i.test(m)) return "timeout";
  if (/connection|ECONNREFUSED|ECONNRESET|EPIPE|closed|MaxRetriesPerRequest|stream isn't writeable|offline queue/i.test(m)) return "connection";
  return "other";
}

function value(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === "number") return v;
  return String(v);
}

const [client, settings] = build();
// ioredis reports connection trouble as 'error' events; the answers carry it already.
client.on("error", () => {});
const send = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

async function main() {
  // Connected before the hello, as an application is before it serves.
  if (client.status !== "ready") await new Promise((resolve) => client.once("ready", resolve));
  send({ hello: 2, client: "ioredis", version: require("ioredis/package.json").version, settings });
}

// Protocol 2: a subscription on a connection of its own (a subscribed ioredis connection takes
// no other command), as an application opens one; ioredis subscribes again after a reconnect
// (autoResubscribe, its default).
const subscriptions = new Map();
function subscribe(channel) {
  const sub = client.duplicate();
  sub.on("error", () => {});
  sub.on("message", (ch, payload) => {
    if (ch === channel) send({ msg: ch, payload });
  });
  sub.subscribe(channel).catch((err) => process.stderr.write(`subscribe ${channel}: ${err.message}\n`));
  subscriptions.set(channel, sub);
}
function unsubscribe(channel) {
  const sub = subscriptions.get(channel);
  subscriptions.delete(channel);
  if (sub) sub.disconnect();
}

main();
const inFlight = new Set();
const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on("line", (line) => {
  const req = JSON.parse(line);
  if (req.subscribe !== undefined) return subscribe(req.subscribe);
  if (req.unsubscribe !== undefined) return unsubscribe(req.unsubscribe);
  const [command, ...args] = req.cmd;
  const p = client
    .call(command, ...args)
    .then((v) => send({ id: req.id, ok: true, value: value(v) }))
    .catch((err) => send({ id: req.id, ok: false, kind: kind(err), error: `${err.name}: ${err.message}` }))
    .finally(() => inFlight.delete(p));
  inFlight.add(p);
});
lines.on("close", async () => {
  // stdin closed: failprobe is done; finish what is in flight, then leave.
  await Promise.race([Promise.allSettled([...inFlight]), new Promise((r) => setTimeout(r, 1500))]);
  for (const channel of [...subscriptions.keys()]) unsubscribe(channel);
  client.disconnect();
  process.exit(0);
});

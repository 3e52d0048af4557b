package failprobe;

import java.io.BufferedReader;
import java.io.FileOutputStream;
import java.io.FileDescriptor;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;

/**
 * failprobe's adapter protocol, version 1 (adapters/README.md), for the JVM adapters: the JVM
 * counterpart of adapters/failprobe_adapter.py. Compiled into each JVM adapter (its pom adds this
 * directory to the compiler's source roots); an adapter only builds its client.
 *
 * <p>stdout carries the protocol alone: System.out is pointed at stderr before anything else
 * runs, so a library that prints cannot break a line.
 */
public final class Protocol {
    private final OutputStream out;
    private final Set<CompletableFuture<?>> inFlight = ConcurrentHashMap.newKeySet();

    private Protocol() {
        out = new FileOutputStream(FileDescriptor.out);
        System.setOut(new PrintStream(new FileOutputStream(FileDescriptor.err), true, StandardCharsets.UTF_8));
    }

    /** Takes stdout for the protocol; call it first. */
    public static Protocol open() {
        return new Protocol();
    }

    /**
     * adapters/install.sh runs each adapter once with FAILPROBE_ADAPTER_TRAIN=1 under
     * -XX:ArchiveClassesAtExit, against an address that refuses: the classes it loads (the
     * library's, netty's, the protocol's) go into the class-data sharing archive its `run` maps,
     * which halves the JVM's start. In that run an adapter gives up at the first refusal.
     */
    public static boolean training() {
        return "1".equals(env("FAILPROBE_ADAPTER_TRAIN"));
    }

    /** Loads the protocol's own classes for the archive (training only). */
    public static void train() {
        StringBuilder sb = new StringBuilder();
        Map<?, ?> req = (Map<?, ?>) new Parser("{\"id\": 1, \"cmd\": [\"GET\", \"k\\u0041\"]}").value();
        write(sb, Map.of("id", req.get("id"), "ok", true, "value", List.of(plain(new byte[] {65}), 1L)));
        CompletableFuture.completedFuture(sb).handle((v, e) -> v).join();
    }

    /**
     * Connects as an application's start-up does, trying again every 100 ms until it is
     * connected: a short command timeout (FAILPROBE_TIMEOUT_MS) also bounds the first handshake
     * and PING, which a JVM still loading its classes on a loaded machine can miss. failprobe's
     * hello deadline (10 s, or FAILPROBE_HELLO_TIMEOUT) is the only limit; each retry is said on
     * stderr, which failprobe quotes when the deadline passes.
     */
    public static <T> T untilConnected(java.util.concurrent.Callable<T> connect) throws Exception {
        while (true) {
            try {
                return connect.call();
            } catch (RuntimeException e) {
                if (training()) throw e;
                System.err.println("adapter: connecting again after " + e);
                Thread.sleep(100);
            }
        }
    }

    /** An environment variable, null when unset or empty. */
    public static String env(String name) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? null : v;
    }

    public static Integer envInt(String name) {
        String v = env(name);
        return v == null ? null : Integer.valueOf(v.trim());
    }

    public static Boolean envBool(String name) {
        String v = env(name);
        if (v == null) return null;
        switch (v.trim().toLowerCase()) {
            case "true": case "1": case "yes": case "on": return true;
            case "false": case "0": case "no": case "off": return false;
            default: throw new IllegalArgumentException(name + "=" + v + ": expected true or false");
        }
    }

    /** A parsed FAILPROBE_TARGET: mode from the scheme, its hosts, the path's parts. */
    public static final class Target {
        public final String mode;
        public final boolean tls;
        public final String username;
        public final List<String[]> hosts = new ArrayList<>();
        /** Sentinel: the master's name; direct: the db. */
        public final String path0;
        public final String path1;

        Target(String url, String modeOverride) {
            int sep = url.indexOf("://");
            String scheme = url.substring(0, sep);
            String rest = url.substring(sep + 3);
            tls = scheme.startsWith("rediss") || scheme.startsWith("valkeys");
            mode = modeOverride != null ? modeOverride
                    : scheme.contains("+sentinel") ? "sentinel" : scheme.contains("+cluster") ? "cluster" : "direct";
            int slash = rest.indexOf('/');
            String netloc = slash >= 0 ? rest.substring(0, slash) : rest;
            String path = slash >= 0 ? rest.substring(slash + 1) : "";
            int q = path.indexOf('?');
            if (q >= 0) path = path.substring(0, q);
            String user = null;
            int at = netloc.lastIndexOf('@');
            if (at >= 0) {
                String info = netloc.substring(0, at).split(":", -1)[0];
                user = info.isEmpty() ? null : java.net.URLDecoder.decode(info, StandardCharsets.UTF_8);
                netloc = netloc.substring(at + 1);
            }
            username = user;
            String[] parts = path.split("/", -1);
            path0 = parts.length > 0 && !parts[0].isEmpty() ? parts[0] : null;
            path1 = parts.length > 1 && !parts[1].isEmpty() ? parts[1] : null;
            String defaultPort = mode.equals("sentinel") ? "26379" : "6379";
            for (String part : netloc.split(",")) {
                int colon = part.lastIndexOf(':');
                if (colon > 0 && !part.endsWith("]")) {
                    hosts.add(new String[] {strip(part.substring(0, colon)), part.substring(colon + 1)});
                } else {
                    hosts.add(new String[] {strip(part), defaultPort});
                }
            }
        }

        private static String strip(String host) {
            return host.startsWith("[") && host.endsWith("]") ? host.substring(1, host.length() - 1) : host;
        }
    }

    public static Target target(String modeVariable) {
        return new Target(System.getenv("FAILPROBE_TARGET"), env(modeVariable));
    }

    /** The effective settings, in the order they were put. */
    public static Map<String, Object> settings() {
        return new LinkedHashMap<>();
    }

    /** Says hello. */
    public void hello(String client, String version, Map<String, Object> settings) {
        Map<String, Object> hello = new LinkedHashMap<>();
        hello.put("hello", 1);
        hello.put("client", client);
        hello.put("version", version);
        hello.put("settings", settings);
        send(hello);
    }

    /**
     * Answers every request from stdin through {@code execute}, concurrently, until stdin
     * closes; then waits up to 1 s for what is in flight, closes the client (at most 0.2 s)
     * and exits (a watchdog halts the JVM at 1.6 s: failprobe kills it at 2 s).
     */
    public void serve(Function<List<String>, CompletionStage<Object>> execute, Function<Throwable, String> kind,
            Runnable close) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isBlank()) continue;
            Map<?, ?> req = (Map<?, ?>) new Parser(line).value();
            Object id = req.get("id");
            List<String> argv = new ArrayList<>();
            for (Object a : (List<?>) req.get("cmd")) argv.add(String.valueOf(a));
            CompletableFuture<Object> answer;
            try {
                answer = execute.apply(argv).toCompletableFuture();
            } catch (Throwable t) {
                answer = CompletableFuture.failedFuture(t);
            }
            CompletableFuture<?> done = answer.handle((value, error) -> {
                Map<String, Object> a = new LinkedHashMap<>();
                a.put("id", id);
                if (error == null) {
                    a.put("ok", true);
                    a.put("value", plain(value));
                } else {
                    Throwable e = unwrap(error);
                    String k = kind.apply(e);
                    // An error the adapter does not know: its trace on stderr, which failprobe keeps.
                    if (k.equals("other")) e.printStackTrace();
                    a.put("ok", false);
                    a.put("kind", k);
                    a.put("error", e.getClass().getSimpleName() + ": " + e.getMessage());
                }
                send(a);
                return null;
            });
            inFlight.add(done);
            done.whenComplete((v, e) -> inFlight.remove(done));
        }
        // stdin closed: failprobe is done.
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(1600);
            } catch (InterruptedException e) {
                return;
            }
            Runtime.getRuntime().halt(0);
        });
        watchdog.setDaemon(true);
        watchdog.start();
        try {
            CompletableFuture.allOf(inFlight.toArray(new CompletableFuture[0])).get(1000, TimeUnit.MILLISECONDS);
        } catch (Exception e) {
            // What is still in flight is past its deadline anyway.
        }
        Thread closer = new Thread(close);
        closer.setDaemon(true);
        closer.start();
        closer.join(200);
        out.flush();
        // An ordinary exit (the watchdog halts one that hangs): -XX:ArchiveClassesAtExit sees it.
        System.exit(0);
    }

    /** The cause a library wrapped, for its class and message. */
    public static Throwable unwrap(Throwable e) {
        while ((e instanceof CompletionException || e instanceof ExecutionException) && e.getCause() != null) {
            e = e.getCause();
        }
        return e;
    }

    private static Object plain(Object v) {
        if (v == null || v instanceof Long || v instanceof Integer) return v;
        if (v instanceof byte[]) return new String((byte[]) v, StandardCharsets.UTF_8);
        if (v instanceof Collection) {
            List<Object> list = new ArrayList<>();
            for (Object o : (Collection<?>) v) list.add(plain(o));
            return list;
        }
        return String.valueOf(v);
    }

    private void send(Map<String, Object> obj) {
        StringBuilder sb = new StringBuilder();
        write(sb, obj);
        sb.append('\n');
        byte[] bytes = sb.toString().getBytes(StandardCharsets.UTF_8);
        synchronized (this) {
            try {
                out.write(bytes);
                out.flush();
            } catch (java.io.IOException e) {
                // failprobe is gone.
            }
        }
    }

    static void write(StringBuilder sb, Object v) {
        if (v == null) {
            sb.append("null");
        } else if (v instanceof Number || v instanceof Boolean) {
            sb.append(v);
        } else if (v instanceof Map) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                if (!first) sb.append(',');
                first = false;
                write(sb, String.valueOf(e.getKey()));
                sb.append(':');
                write(sb, e.getValue());
            }
            sb.append('}');
        } else if (v instanceof Collection) {
            sb.append('[');
            boolean first = true;
            for (Object o : (Collection<?>) v) {
                if (!first) sb.append(',');
                first = false;
                write(sb, o);
            }
            sb.append(']');
        } else {
            String s = v.toString();
            sb.append('"');
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                switch (c) {
                    case '"': sb.append("\\\""); break;
                    case '\\': sb.append("\\\\"); break;
                    case '\n': sb.append("\\n"); break;
                    case '\r': sb.append("\\r"); break;
                    case '\t': sb.append("\\t"); break;
                    default:
                        if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
                        else sb.append(c);
                }
            }
            sb.append('"');
        }
    }

    /** Just enough JSON for a request line. */
    static final class Parser {
        private final String s;
        private int i;

        Parser(String s) {
            this.s = s;
        }

        Object value() {
            ws();
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> m = new LinkedHashMap<>();
                i++;
                ws();
                if (s.charAt(i) == '}') { i++; return m; }
                while (true) {
                    ws();
                    String k = (String) value();
                    ws();
                    expect(':');
                    m.put(k, value());
                    ws();
                    if (s.charAt(i++) == '}') return m;
                }
            }
            if (c == '[') {
                List<Object> l = new ArrayList<>();
                i++;
                ws();
                if (s.charAt(i) == ']') { i++; return l; }
                while (true) {
                    l.add(value());
                    ws();
                    if (s.charAt(i++) == ']') return l;
                }
            }
            if (c == '"') {
                StringBuilder sb = new StringBuilder();
                i++;
                while (true) {
                    char d = s.charAt(i++);
                    if (d == '"') return sb.toString();
                    if (d != '\\') { sb.append(d); continue; }
                    char e = s.charAt(i++);
                    switch (e) {
                        case 'n': sb.append('\n'); break;
                        case 'r': sb.append('\r'); break;
                        case 't': sb.append('\t'); break;
                        case 'b': sb.append('\b'); break;
                        case 'f': sb.append('\f'); break;
                        case 'u': sb.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; break;
                        default: sb.append(e);
                    }
                }
            }
            int start = i;
            while (i < s.length() && ",}] \t".indexOf(s.charAt(i)) < 0) i++;
            String tok = s.substring(start, i);
            switch (tok) {
                case "null": return null;
                case "true": return true;
                case "false": return false;
                default: return tok.contains(".") || tok.contains("e") ? (Object) Double.valueOf(tok) : (Object) Long.valueOf(tok);
            }
        }

        private void ws() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++;
        }

        private void expect(char c) {
            if (s.charAt(i++) != c) throw new IllegalArgumentException("expected " + c + " at " + (i - 1));
        }
    }
}

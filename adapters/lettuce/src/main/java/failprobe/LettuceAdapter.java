package failprobe;

import io.lettuce.core.ClientOptions;
import io.lettuce.core.LettuceVersion;
import io.lettuce.core.RedisCommandExecutionException;
import io.lettuce.core.RedisCommandTimeoutException;
import io.lettuce.core.RedisConnectionException;
import io.lettuce.core.RedisURI;
import io.lettuce.core.SocketOptions;
import io.lettuce.core.SslOptions;
import io.lettuce.core.RedisClient;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.cluster.ClusterClientOptions;
import io.lettuce.core.cluster.ClusterTopologyRefreshOptions;
import io.lettuce.core.cluster.RedisClusterClient;
import io.lettuce.core.cluster.api.StatefulRedisClusterConnection;
import io.lettuce.core.codec.StringCodec;
import io.lettuce.core.output.CommandOutput;
import io.lettuce.core.protocol.CommandArgs;
import io.lettuce.core.protocol.ProtocolKeyword;
import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;

/**
 * failprobe adapter for Lettuce (io.lettuce:lettuce-core), protocol version 1 (adapters/README.md).
 * failprobe starts it with FAILPROBE_TARGET, FAILPROBE_PASSWORD and FAILPROBE_TIMEOUT_MS in the
 * environment and speaks JSON lines on stdin/stdout; requests go through Lettuce's async API on
 * one shared connection, so they are concurrent (pipelined), as in an application.
 *
 * <p>The client is built the way an application builds it; these settings mirror a production one
 * (unset: Lettuce's own default, except where noted):
 *
 * <pre>
 *   LETTUCE_MODE                  direct | sentinel | cluster (default: from FAILPROBE_TARGET's
 *                                 scheme: redis[s]://, redis[s]+sentinel://, redis[s]+cluster://)
 *   LETTUCE_COMMAND_TIMEOUT       ms per command, RedisURI's timeout (default: FAILPROBE_TIMEOUT_MS;
 *                                 `default`: Lettuce's 60 s)
 *   LETTUCE_CONNECT_TIMEOUT       ms to connect, SocketOptions (Lettuce default 10000)
 *   LETTUCE_TCP_KEEPALIVE         IDLE,INTERVAL,COUNT: TCP keepalive, ms, ms, probes (e.g.
 *                                 5000,5000,3; Lettuce default: off)
 *   LETTUCE_TCP_USER_TIMEOUT      ms: TCP_USER_TIMEOUT (Lettuce default: off). Lettuce needs
 *                                 netty's native epoll transport for it, which the adapter does
 *                                 not bundle: set, it exits 2 before the hello, saying so
 *   LETTUCE_AUTO_RECONNECT        true | false (Lettuce default true)
 *   LETTUCE_DISCONNECTED_BEHAVIOR default | accept | reject: commands while disconnected
 *                                 (Lettuce default `default`: queued while it reconnects)
 *   Cluster (RedisClusterClient, ClusterTopologyRefreshOptions):
 *   LETTUCE_ADAPTIVE_REFRESH      true | false: refresh the topology on MOVED, ASK, persistent
 *                                 reconnects, uncovered slots, unknown nodes (Lettuce >= 7.0
 *                                 default: true, all triggers; it was off before 7.0)
 *   LETTUCE_ADAPTIVE_REFRESH_TIMEOUT  ms: at most one adaptive refresh per this (Lettuce default 5000)
 *   LETTUCE_PERIODIC_REFRESH      ms between periodic refreshes, or `off` (Lettuce default off)
 *   LETTUCE_TOPOLOGY_REFRESH      off | adaptive | periodic | both: a shorthand for the two above
 *                                 (periodic at LETTUCE_PERIODIC_REFRESH or Lettuce's 60 s)
 *   LETTUCE_MAX_REDIRECTS         MOVED/ASK redirections followed (Lettuce default 5)
 * </pre>
 *
 * Direct: RedisClient.connect(RedisURI.redis(host, port)). Sentinel: RedisClient.connect of a
 * sentinel RedisURI (Lettuce asks the sentinels for the master on every (re)connect). Cluster:
 * RedisClusterClient.connect.
 */
public final class LettuceAdapter {
    private static final String DEFAULT_VERSION = "7.7.0.RELEASE";

    public static void main(String[] args) throws Exception {
        Protocol protocol = Protocol.open();
        if (Protocol.training()) Protocol.train();
        Protocol.Target target = Protocol.target("LETTUCE_MODE");
        Map<String, Object> settings = Protocol.settings();
        settings.put("mode", target.mode);

        String password = Protocol.env("FAILPROBE_PASSWORD");
        String timeoutSetting = Protocol.env("LETTUCE_COMMAND_TIMEOUT");
        Duration timeout;
        if ("default".equals(timeoutSetting)) {
            timeout = RedisURI.DEFAULT_TIMEOUT_DURATION;
        } else if (timeoutSetting != null) {
            timeout = Duration.ofMillis(Long.parseLong(timeoutSetting));
        } else {
            timeout = Duration.ofMillis(Long.parseLong(System.getenv().getOrDefault("FAILPROBE_TIMEOUT_MS", "60000")));
        }
        settings.put("command_timeout_ms", timeout.toMillis());
        if (Protocol.env("FAILPROBE_CLIENT_NAME") != null) settings.put("client_name", Protocol.env("FAILPROBE_CLIENT_NAME"));

        SocketOptions.Builder socket = SocketOptions.builder();
        Integer connectTimeout = Protocol.envInt("LETTUCE_CONNECT_TIMEOUT");
        if (connectTimeout != null) socket.connectTimeout(Duration.ofMillis(connectTimeout));
        String keepAlive = Protocol.env("LETTUCE_TCP_KEEPALIVE");
        if (keepAlive != null) {
            String[] k = keepAlive.split(",");
            if (k.length != 3) throw new IllegalArgumentException("LETTUCE_TCP_KEEPALIVE: expected IDLE,INTERVAL,COUNT");
            socket.keepAlive(SocketOptions.KeepAliveOptions.builder().enable()
                    .idle(Duration.ofMillis(Long.parseLong(k[0].trim())))
                    .interval(Duration.ofMillis(Long.parseLong(k[1].trim())))
                    .count(Integer.parseInt(k[2].trim())).build());
        }
        Integer userTimeout = Protocol.envInt("LETTUCE_TCP_USER_TIMEOUT");
        if (userTimeout != null) {
            // Lettuce refuses TCP_USER_TIMEOUT without a native transport (epoll, io_uring), on
            // every connect; netty's native transport is not bundled: say so once and stop.
            if (!io.lettuce.core.resource.EpollProvider.isAvailable()) {
                System.err.println("lettuce adapter: LETTUCE_TCP_USER_TIMEOUT needs netty's native epoll transport, which the adapter does not bundle");
                System.exit(2);
            }
            socket.tcpUserTimeout(SocketOptions.TcpUserTimeoutOptions.builder().enable()
                    .tcpUserTimeout(Duration.ofMillis(userTimeout)).build());
        }
        SocketOptions socketOptions = socket.build();
        settings.put("connect_timeout_ms", socketOptions.getConnectTimeout().toMillis());
        SocketOptions.KeepAliveOptions ka = socketOptions.getKeepAlive();
        settings.put("tcp_keepalive", ka.isEnabled()
                ? ka.getIdle().toMillis() + "," + ka.getInterval().toMillis() + "," + ka.getCount() : "off");
        if (socketOptions.getTcpUserTimeout().isEnabled()) {
            settings.put("tcp_user_timeout_ms", socketOptions.getTcpUserTimeout().getTcpUserTimeout().toMillis());
        } else {
            settings.put("tcp_user_timeout_ms", "off");
        }

        Boolean autoReconnect = Protocol.envBool("LETTUCE_AUTO_RECONNECT");
        ClientOptions.DisconnectedBehavior disconnected = ClientOptions.DEFAULT_DISCONNECTED_BEHAVIOR;
        String behavior = Protocol.env("LETTUCE_DISCONNECTED_BEHAVIOR");
        if (behavior != null) {
            switch (behavior) {
                case "default": disconnected = ClientOptions.DisconnectedBehavior.DEFAULT; break;
                case "accept": disconnected = ClientOptions.DisconnectedBehavior.ACCEPT_COMMANDS; break;
                case "reject": disconnected = ClientOptions.DisconnectedBehavior.REJECT_COMMANDS; break;
                default: throw new IllegalArgumentException("LETTUCE_DISCONNECTED_BEHAVIOR=" + behavior);
            }
        }
        settings.put("auto_reconnect", autoReconnect != null ? autoReconnect : ClientOptions.DEFAULT_AUTO_RECONNECT);
        settings.put("disconnected_behavior", disconnected.name().toLowerCase());

        SslOptions ssl = null;
        if (target.tls) {
            settings.put("tls", true);
            String ca = Protocol.env("FAILPROBE_TLS_CA_FILE");
            if (ca != null) ssl = SslOptions.builder().trustManager(new File(ca)).build();
        }

        List<RedisURI> uris = new ArrayList<>();
        RedisURI sentinelUri = null;
        if (target.mode.equals("sentinel")) {
            RedisURI.Builder b = RedisURI.builder().withSentinelMasterId(target.path0);
            String sentinelPassword = Protocol.env("FAILPROBE_SENTINEL_PASSWORD");
            for (String[] h : target.hosts) {
                if (sentinelPassword != null) b.withSentinel(h[0], Integer.parseInt(h[1]), sentinelPassword);
                else b.withSentinel(h[0], Integer.parseInt(h[1]));
            }
            if (target.path1 != null) b.withDatabase(Integer.parseInt(target.path1));
            sentinelUri = finish(b, target, password, timeout);
            settings.put("master", target.path0);
        } else {
            for (String[] h : target.hosts) {
                RedisURI.Builder b = RedisURI.Builder.redis(h[0], Integer.parseInt(h[1]));
                if (target.mode.equals("direct") && target.path0 != null) b.withDatabase(Integer.parseInt(target.path0));
                uris.add(finish(b, target, password, timeout));
            }
        }

        Function<List<String>, CompletionStage<Object>> execute;
        Runnable close;
        if (target.mode.equals("cluster")) {
            RedisClusterClient client = RedisClusterClient.create(uris);
            ClusterTopologyRefreshOptions.Builder refresh = ClusterTopologyRefreshOptions.builder();
            String shorthand = Protocol.env("LETTUCE_TOPOLOGY_REFRESH");
            Boolean adaptive = Protocol.envBool("LETTUCE_ADAPTIVE_REFRESH");
            String periodic = Protocol.env("LETTUCE_PERIODIC_REFRESH");
            if (shorthand != null) {
                if (!List.of("off", "adaptive", "periodic", "both").contains(shorthand)) {
                    throw new IllegalArgumentException("LETTUCE_TOPOLOGY_REFRESH=" + shorthand);
                }
                if (adaptive == null) adaptive = shorthand.equals("adaptive") || shorthand.equals("both");
                if (periodic == null) {
                    periodic = shorthand.equals("periodic") || shorthand.equals("both")
                            ? String.valueOf(ClusterTopologyRefreshOptions.DEFAULT_REFRESH_PERIOD_DURATION.toMillis())
                            : "off";
                }
                settings.put("topology_refresh", shorthand);
            }
            if (Boolean.FALSE.equals(adaptive)) refresh.disableAllAdaptiveRefreshTriggers();
            Integer adaptiveTimeout = Protocol.envInt("LETTUCE_ADAPTIVE_REFRESH_TIMEOUT");
            if (adaptiveTimeout != null) refresh.adaptiveRefreshTriggersTimeout(Duration.ofMillis(adaptiveTimeout));
            if (periodic != null && !periodic.equals("off")) {
                refresh.enablePeriodicRefresh(Duration.ofMillis(Long.parseLong(periodic)));
            }
            ClusterTopologyRefreshOptions refreshOptions = refresh.build();
            ClusterClientOptions.Builder options = ClusterClientOptions.builder()
                    .topologyRefreshOptions(refreshOptions)
                    .socketOptions(socketOptions)
                    .disconnectedBehavior(disconnected);
            if (autoReconnect != null) options.autoReconnect(autoReconnect);
            if (ssl != null) options.sslOptions(ssl);
            Integer redirects = Protocol.envInt("LETTUCE_MAX_REDIRECTS");
            if (redirects != null) options.maxRedirects(redirects);
            ClusterClientOptions clusterOptions = options.build();
            client.setOptions(clusterOptions);
            List<String> triggers = new ArrayList<>();
            refreshOptions.getAdaptiveRefreshTriggers().forEach(t -> triggers.add(t.name()));
            triggers.sort(null);
            settings.put("adaptive_refresh_triggers", triggers);
            settings.put("adaptive_refresh_timeout_ms", refreshOptions.getAdaptiveRefreshTimeout().toMillis());
            settings.put("periodic_refresh_ms",
                    refreshOptions.isPeriodicRefreshEnabled() ? (Object) refreshOptions.getRefreshPeriod().toMillis() : "off");
            settings.put("max_redirects", clusterOptions.getMaxRedirects());
            // Connected before the hello, as an application is before it serves: the slots are known.
            StatefulRedisClusterConnection<String, String> conn = Protocol.untilConnected(() -> client.connect(StringCodec.UTF8));
            execute = argv -> conn.async().dispatch(keyword(argv.get(0)), new AnyOutput(), arguments(argv));
            close = () -> client.shutdown(0, 200, TimeUnit.MILLISECONDS);
        } else {
            RedisClient client = RedisClient.create();
            ClientOptions.Builder options = ClientOptions.builder().socketOptions(socketOptions).disconnectedBehavior(disconnected);
            if (autoReconnect != null) options.autoReconnect(autoReconnect);
            if (ssl != null) options.sslOptions(ssl);
            client.setOptions(options.build());
            RedisURI uri = sentinelUri != null ? sentinelUri : uris.get(0);
            StatefulRedisConnection<String, String> conn = Protocol.untilConnected(() -> {
                StatefulRedisConnection<String, String> c = client.connect(StringCodec.UTF8, uri);
                try {
                    c.sync().ping();
                } catch (RuntimeException e) {
                    c.close();
                    throw e;
                }
                return c;
            });
            execute = argv -> conn.async().dispatch(keyword(argv.get(0)), new AnyOutput(), arguments(argv));
            close = () -> client.shutdown(0, 200, TimeUnit.MILLISECONDS);
        }

        String version = LettuceVersion.getVersion();
        // "7.7.0.RELEASE/1960d49": the release, without its commit.
        protocol.hello("lettuce", version != null ? version.split("/")[0] : DEFAULT_VERSION, settings);
        protocol.serve(execute, LettuceAdapter::kind, close);
    }

    private static RedisURI finish(RedisURI.Builder b, Protocol.Target target, String password, Duration timeout) {
        if (password != null) {
            if (target.username != null) b.withAuthentication(target.username, password);
            else b.withPassword(password.toCharArray());
        }
        if (target.tls) b.withSsl(true);
        // FAILPROBE_CLIENT_NAME (adapters/README.md): the builder also names the sentinels' URIs
        // added before; a cluster client names every node connection (topology refresh
        // included) after its first URI.
        String clientName = Protocol.env("FAILPROBE_CLIENT_NAME");
        if (clientName != null) b.withClientName(clientName);
        return b.withTimeout(timeout).build();
    }

    private static ProtocolKeyword keyword(String name) {
        byte[] bytes = name.toUpperCase().getBytes(StandardCharsets.US_ASCII);
        return new ProtocolKeyword() {
            @Override
            public byte[] getBytes() {
                return bytes;
            }

            @Override
            public String toString() {
                return name.toUpperCase();
            }
        };
    }

    /**
     * The command's arguments, its keys marked as keys so that the cluster client routes it by
     * them: EVAL/EVALSHA's numkeys keys, otherwise the first argument.
     */
    private static CommandArgs<String, String> arguments(List<String> argv) {
        CommandArgs<String, String> args = new CommandArgs<>(StringCodec.UTF8);
        String name = argv.get(0).toUpperCase();
        if ((name.equals("EVAL") || name.equals("EVALSHA")) && argv.size() >= 3) {
            int keys = Integer.parseInt(argv.get(2));
            args.add(argv.get(1)).add(keys);
            for (int i = 3; i < argv.size(); i++) {
                if (i < 3 + keys) args.addKey(argv.get(i));
                else args.addValue(argv.get(i));
            }
        } else {
            for (int i = 1; i < argv.size(); i++) {
                if (i == 1) args.addKey(argv.get(i));
                else args.addValue(argv.get(i));
            }
        }
        return args;
    }

    /**
     * Any reply as a plain value: a string, an integer, null, or a list of them (Lettuce's
     * ObjectOutput takes arrays only).
     */
    static final class AnyOutput extends CommandOutput<String, String, Object> {
        private final Deque<List<Object>> stack = new ArrayDeque<>();

        AnyOutput() {
            super(StringCodec.UTF8, null);
        }

        private void add(Object v) {
            if (stack.isEmpty()) output = v;
            else stack.peek().add(v);
        }

        @Override
        public void set(ByteBuffer bytes) {
            add(bytes == null ? null : codec.decodeValue(bytes));
        }

        @Override
        public void setSingle(ByteBuffer bytes) {
            add(bytes == null ? null : StandardCharsets.UTF_8.decode(bytes).toString());
        }

        @Override
        public void setBigNumber(ByteBuffer bytes) {
            setSingle(bytes);
        }

        @Override
        public void set(long integer) {
            add(integer);
        }

        @Override
        public void set(double number) {
            add(number);
        }

        @Override
        public void set(boolean value) {
            add(value ? 1L : 0L);
        }

        @Override
        public void multi(int count) {
            List<Object> list = new ArrayList<>(Math.max(count, 0));
            add(list);
            stack.push(list);
        }

        @Override
        public void multiMap(int count) {
            multi(count * 2);
        }

        @Override
        public void multiSet(int count) {
            multi(count);
        }

        @Override
        public void complete(int depth) {
            while (stack.size() > depth) stack.pop();
        }
    }

    private static String kind(Throwable e) {
        if (e instanceof RedisCommandTimeoutException) return "timeout";
        if (e instanceof RedisCommandExecutionException) return "server";
        if (e instanceof RedisConnectionException || e instanceof ClosedChannelException || e instanceof IOException) {
            return "connection";
        }
        String m = String.valueOf(e.getMessage());
        if (m.contains("timed out")) return "timeout";
        if (m.contains("Connection closed") || m.contains("Currently not connected") || m.contains("reset")
                || m.contains("Connection refused") || m.contains("Unable to connect")) {
            return "connection";
        }
        return "other";
    }
}

package failprobe;

import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Function;
import redis.clients.jedis.ConnectionPoolConfig;
import redis.clients.jedis.DefaultJedisClientConfig;
import redis.clients.jedis.HostAndPort;
import redis.clients.jedis.JedisClientConfig;
import redis.clients.jedis.RedisClient;
import redis.clients.jedis.RedisClusterClient;
import redis.clients.jedis.RedisSentinelClient;
import redis.clients.jedis.UnifiedJedis;
import redis.clients.jedis.commands.ProtocolCommand;
import redis.clients.jedis.exceptions.JedisClusterOperationException;
import redis.clients.jedis.exceptions.JedisConnectionException;
import redis.clients.jedis.exceptions.JedisDataException;

/**
 * failprobe adapter for Jedis (redis.clients:jedis), protocol version 1 (adapters/README.md).
 * failprobe starts it with FAILPROBE_TARGET, FAILPROBE_PASSWORD and FAILPROBE_TIMEOUT_MS in the
 * environment and speaks JSON lines on stdin/stdout. Jedis is blocking: each request runs on a
 * thread of a pool (an application's request threads), each borrowing a connection from Jedis's
 * own pool, so requests are concurrent up to the smaller of the two.
 *
 * <p>The client is built the way an application builds it; these settings mirror a production one
 * (unset: Jedis's own default, except where noted):
 *
 * <pre>
 *   JEDIS_MODE                 direct | sentinel | cluster (default: from FAILPROBE_TARGET's scheme:
 *                              redis[s]://, redis[s]+sentinel://, redis[s]+cluster://)
 *   JEDIS_SO_TIMEOUT           ms per command, the socket's read timeout (default:
 *                              FAILPROBE_TIMEOUT_MS; `default`: Jedis's 2000)
 *   JEDIS_CONNECT_TIMEOUT      ms to connect (Jedis default 2000)
 *   JEDIS_POOL_MAX_TOTAL       connections in each pool (Jedis default 8)
 *   JEDIS_POOL_MAX_WAIT        ms to wait for a pooled connection (Jedis default -1: for ever)
 *   JEDIS_POOL_TEST_WHILE_IDLE true | false: PING idle pooled connections, dropping those that
 *                              fail (Jedis's ConnectionPoolConfig default true)
 *   JEDIS_POOL_EVICTION_PERIOD ms between those idle checks (Jedis's ConnectionPoolConfig
 *                              default 30000)
 *   JEDIS_THREADS              the adapter's request threads (default 64); a request that
 *                              waited for one past FAILPROBE_TIMEOUT_MS is answered `timeout`
 *                              unsent (its caller gave up; hello.settings.queue_shed_after_ms)
 *   Cluster (RedisClusterClient):
 *   JEDIS_MAX_ATTEMPTS         attempts of a command across connection errors and redirections,
 *                              the slots refreshed between them (Jedis default 5)
 *   JEDIS_MAX_TOTAL_RETRIES_DURATION  ms for all the attempts (Jedis default: SO_TIMEOUT × MAX_ATTEMPTS)
 *   JEDIS_TOPOLOGY_REFRESH_PERIOD     ms between periodic slot refreshes (Jedis default: off)
 *   Sentinel (RedisSentinelClient):
 *   JEDIS_SENTINEL_SO_TIMEOUT  ms per command to a sentinel (Jedis default 2000)
 * </pre>
 *
 * Jedis 8 renamed JedisPooled to RedisClient, JedisSentineled to RedisSentinelClient, and
 * deprecated JedisCluster for RedisClusterClient: the adapter uses the new names (the same
 * classes' behaviour, built through their builders).
 */
public final class JedisAdapter {
    private static final String DEFAULT_VERSION = "8.0.2";

    public static void main(String[] args) throws Exception {
        Protocol protocol = Protocol.open();
        if (Protocol.training()) Protocol.train();
        Protocol.Target target = Protocol.target("JEDIS_MODE");
        Map<String, Object> settings = Protocol.settings();
        settings.put("mode", target.mode);

        DefaultJedisClientConfig.Builder config = DefaultJedisClientConfig.builder();
        String soSetting = Protocol.env("JEDIS_SO_TIMEOUT");
        if (soSetting == null) {
            soSetting = Protocol.env("FAILPROBE_TIMEOUT_MS");
        }
        if (soSetting != null && !soSetting.equals("default")) config.socketTimeoutMillis(Integer.parseInt(soSetting));
        Integer connectTimeout = Protocol.envInt("JEDIS_CONNECT_TIMEOUT");
        if (connectTimeout != null) config.connectionTimeoutMillis(connectTimeout);
        String password = Protocol.env("FAILPROBE_PASSWORD");
        if (password != null) config.password(password);
        if (target.username != null) config.user(target.username);
        // FAILPROBE_CLIENT_NAME (adapters/README.md): every pooled connection's CLIENT SETNAME
        // (each cluster node's, slot discovery's), and the sentinels' through their own config.
        String clientName = Protocol.env("FAILPROBE_CLIENT_NAME");
        if (clientName != null) {
            config.clientName(clientName);
            settings.put("client_name", clientName);
        }
        if (target.tls) {
            config.ssl(true);
            settings.put("tls", true);
            // FAILPROBE_TLS_CA_FILE: Jedis trusts what the JVM's default trust store trusts; a
            // private CA needs -Djavax.net.ssl.trustStore in FAILPROBE_JAVA_OPTS.
        }
        if (target.mode.equals("direct") && target.path0 != null) config.database(Integer.parseInt(target.path0));
        if (target.mode.equals("sentinel") && target.path1 != null) config.database(Integer.parseInt(target.path1));
        JedisClientConfig clientConfig = config.build();
        settings.put("so_timeout_ms", clientConfig.getSocketTimeoutMillis());
        settings.put("connect_timeout_ms", clientConfig.getConnectionTimeoutMillis());

        ConnectionPoolConfig pool = new ConnectionPoolConfig();
        Integer maxTotal = Protocol.envInt("JEDIS_POOL_MAX_TOTAL");
        if (maxTotal != null) pool.setMaxTotal(maxTotal);
        Integer maxWait = Protocol.envInt("JEDIS_POOL_MAX_WAIT");
        if (maxWait != null) pool.setMaxWait(Duration.ofMillis(maxWait));
        Boolean testWhileIdle = Protocol.envBool("JEDIS_POOL_TEST_WHILE_IDLE");
        if (testWhileIdle != null) pool.setTestWhileIdle(testWhileIdle);
        Integer evictionPeriod = Protocol.envInt("JEDIS_POOL_EVICTION_PERIOD");
        if (evictionPeriod != null) pool.setTimeBetweenEvictionRuns(Duration.ofMillis(evictionPeriod));
        settings.put("pool_max_total", pool.getMaxTotal());
        settings.put("pool_test_while_idle", pool.getTestWhileIdle());
        settings.put("pool_eviction_period_ms", pool.getDurationBetweenEvictionRuns().toMillis());
        settings.put("pool_max_wait_ms", pool.getMaxWaitDuration().isNegative() ? "infinite" : (Object) pool.getMaxWaitDuration().toMillis());
        Integer threadSetting = Protocol.envInt("JEDIS_THREADS");
        int threads = threadSetting != null ? threadSetting : 64;
        settings.put("threads", threads);

        Set<HostAndPort> nodes = new HashSet<>();
        for (String[] h : target.hosts) nodes.add(new HostAndPort(h[0], Integer.parseInt(h[1])));

        UnifiedJedis client;
        boolean cluster = target.mode.equals("cluster");
        if (cluster) {
            var b = RedisClusterClient.builder().nodes(nodes).clientConfig(clientConfig).poolConfig(pool);
            Integer attempts = Protocol.envInt("JEDIS_MAX_ATTEMPTS");
            int maxAttempts = attempts != null ? attempts : RedisClusterClient.DEFAULT_MAX_ATTEMPTS;
            b.maxAttempts(maxAttempts);
            Integer total = Protocol.envInt("JEDIS_MAX_TOTAL_RETRIES_DURATION");
            // Jedis's own default, said here: soTimeout × maxAttempts.
            long totalMs = total != null ? total : (long) clientConfig.getSocketTimeoutMillis() * maxAttempts;
            b.maxTotalRetriesDuration(Duration.ofMillis(totalMs));
            Integer period = Protocol.envInt("JEDIS_TOPOLOGY_REFRESH_PERIOD");
            if (period != null) b.topologyRefreshPeriod(Duration.ofMillis(period));
            settings.put("max_attempts", maxAttempts);
            settings.put("max_total_retries_duration_ms", totalMs);
            settings.put("topology_refresh_period_ms", period != null ? (Object) period : "off");
            // Connected before the hello: the builder reads the slots.
            client = Protocol.untilConnected(b::build);
        } else if (target.mode.equals("sentinel")) {
            DefaultJedisClientConfig.Builder sentinelConfig = DefaultJedisClientConfig.builder();
            String sentinelPassword = Protocol.env("FAILPROBE_SENTINEL_PASSWORD");
            if (sentinelPassword != null) sentinelConfig.password(sentinelPassword);
            if (clientName != null) sentinelConfig.clientName(clientName);
            Integer sentinelTimeout = Protocol.envInt("JEDIS_SENTINEL_SO_TIMEOUT");
            if (sentinelTimeout != null) sentinelConfig.socketTimeoutMillis(sentinelTimeout);
            JedisClientConfig sc = sentinelConfig.build();
            settings.put("master", target.path0);
            settings.put("sentinel_so_timeout_ms", sc.getSocketTimeoutMillis());
            client = RedisSentinelClient.builder().masterName(target.path0).sentinels(nodes)
                    .clientConfig(clientConfig).sentinelClientConfig(sc).poolConfig(pool).build();
        } else {
            client = RedisClient.builder().hostAndPort(nodes.iterator().next()).clientConfig(clientConfig)
                    .poolConfig(pool).build();
        }
        // Connected before the hello, as an application is before it serves.
        UnifiedJedis connected = client;
        Protocol.untilConnected(() -> connected.sendCommand(command("PING")));

        ExecutorService executor = Executors.newFixedThreadPool(threads, r -> {
            Thread t = new Thread(r, "request");
            t.setDaemon(true);
            return t;
        });
        UnifiedJedis jedis = client;
        // A request that waited in the adapter's own queue (all its threads busy) past the
        // probe's deadline is answered `timeout` unsent: its caller has given up, and sending it
        // would only delay the requests behind it. Inside Jedis (waiting for a pooled
        // connection, sent, read) nothing is cut short.
        String probeTimeout = Protocol.env("FAILPROBE_TIMEOUT_MS");
        long shedAfterNanos = probeTimeout != null ? Long.parseLong(probeTimeout) * 1_000_000 : Long.MAX_VALUE;
        settings.put("queue_shed_after_ms", probeTimeout != null ? (Object) Long.parseLong(probeTimeout) : "never");
        Function<List<String>, CompletionStage<Object>> execute = argv -> {
            long queued = System.nanoTime();
            return CompletableFuture.supplyAsync(() -> {
            long waited = System.nanoTime() - queued;
            if (waited > shedAfterNanos) {
                throw new QueuedTooLong("not sent: waited " + waited / 1_000_000 + " ms for one of the adapter's "
                        + threads + " threads (JEDIS_THREADS)");
            }
            String[] rest = argv.subList(1, argv.size()).toArray(new String[0]);
            ProtocolCommand cmd = command(argv.get(0));
            String key = cluster ? firstKey(argv) : null;
            return key != null ? jedis.sendCommand(key, cmd, rest) : jedis.sendCommand(cmd, rest);
            }, executor);
        };

        String version = null;
        try (var in = UnifiedJedis.class.getResourceAsStream("/META-INF/maven/redis.clients/jedis/pom.properties")) {
            if (in != null) {
                java.util.Properties p = new java.util.Properties();
                p.load(in);
                version = p.getProperty("version");
            }
        }
        protocol.hello("jedis", version != null && !version.isEmpty() ? version : DEFAULT_VERSION, settings);
        protocol.serve(execute, JedisAdapter::kind, client::close);
    }

    private static ProtocolCommand command(String name) {
        byte[] raw = name.toUpperCase().getBytes(StandardCharsets.US_ASCII);
        return () -> raw;
    }

    /** The key a cluster client routes by: EVAL/EVALSHA's first key, otherwise the first argument. */
    private static String firstKey(List<String> argv) {
        String name = argv.get(0).toUpperCase();
        if (name.equals("EVAL") || name.equals("EVALSHA")) {
            return argv.size() > 3 && Integer.parseInt(argv.get(2)) > 0 ? argv.get(3) : null;
        }
        return argv.size() > 1 ? argv.get(1) : null;
    }

    /** A request the adapter did not send: it waited for a thread past the probe's deadline. */
    static final class QueuedTooLong extends RuntimeException {
        QueuedTooLong(String message) {
            super(message);
        }
    }

    private static String kind(Throwable e) {
        if (e instanceof QueuedTooLong) return "timeout";
        if (e instanceof JedisDataException) return "server";
        for (Throwable c = e; c != null; c = c.getCause()) {
            if (c instanceof SocketTimeoutException) return "timeout";
        }
        if (e instanceof JedisClusterOperationException) {
            String m = String.valueOf(e.getMessage());
            // "No more cluster attempts left" / "Cluster retry deadline exceeded": what the last
            // attempt met is in its suppressed exceptions or its cause.
            if (m.contains("deadline")) return "timeout";
            return "connection";
        }
        if (e instanceof JedisConnectionException) return "connection";
        return "other";
    }
}

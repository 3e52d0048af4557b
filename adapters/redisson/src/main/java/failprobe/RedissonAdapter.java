package failprobe;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.function.Function;
import org.redisson.Redisson;
import org.redisson.api.RScript;
import org.redisson.api.RedissonClient;
import org.redisson.client.RedisConnectionException;
import org.redisson.client.RedisException;
import org.redisson.client.RedisNodeNotFoundException;
import org.redisson.client.RedisTimeoutException;
import org.redisson.client.WriteRedisConnectionException;
import org.redisson.client.codec.StringCodec;
import org.redisson.config.BaseConfig;
import org.redisson.config.ClusterServersConfig;
import org.redisson.config.Config;
import org.redisson.config.EqualJitterDelay;
import org.redisson.config.SentinelServersConfig;
import org.redisson.config.SingleServerConfig;

/**
 * failprobe adapter for Redisson (org.redisson:redisson), protocol version 1 (adapters/README.md).
 * failprobe starts it with FAILPROBE_TARGET, FAILPROBE_PASSWORD and FAILPROBE_TIMEOUT_MS in the
 * environment and speaks JSON lines on stdin/stdout; requests go through Redisson's async API
 * (RScript.evalAsync for the writes' EVAL, RBucket.getAsync for the reads' GET; Redisson has no
 * public call for an arbitrary command, so any other is answered `other`).
 *
 * <p>The client is built the way an application builds it; these settings mirror a production one
 * (unset: Redisson's own default, except where noted):
 *
 * <pre>
 *   REDISSON_MODE              direct | sentinel | cluster (default: from FAILPROBE_TARGET's scheme:
 *                              redis[s]://, redis[s]+sentinel://, redis[s]+cluster://)
 *   REDISSON_TIMEOUT           ms a command waits for its answer, once sent (default:
 *                              FAILPROBE_TIMEOUT_MS; `default`: Redisson's 3000)
 *   REDISSON_CONNECT_TIMEOUT   ms to connect (Redisson default 10000)
 *   REDISSON_RETRY_ATTEMPTS    times a command is sent again when it could not be sent or timed
 *                              out (Redisson default 4)
 *   REDISSON_RETRY_DELAY       ms: the retries' delay, EqualJitterDelay(D, D) (Redisson default:
 *                              EqualJitterDelay(1 s, 2 s))
 *   REDISSON_PING_INTERVAL     ms between PINGs on each connection (Redisson default 30000)
 *   REDISSON_MIN_IDLE          connections opened at start-up per node (Redisson default 24)
 *   REDISSON_SCAN_INTERVAL     ms between cluster topology scans, or between sentinel scans
 *                              (Redisson default 5000 / 1000)
 * </pre>
 *
 * Direct: useSingleServer(). Sentinel: useSentinelServers() (it follows +switch-master and scans
 * the sentinels). Cluster: useClusterServers() (it scans CLUSTER NODES every scanInterval).
 */
public final class RedissonAdapter {
    public static void main(String[] args) throws Exception {
        Protocol protocol = Protocol.open();
        if (Protocol.training()) Protocol.train();
        Protocol.Target target = Protocol.target("REDISSON_MODE");
        Map<String, Object> settings = Protocol.settings();
        settings.put("mode", target.mode);
        String scheme = target.tls ? "rediss://" : "redis://";
        List<String> addresses = new ArrayList<>();
        for (String[] h : target.hosts) {
            String host = h[0].contains(":") ? "[" + h[0] + "]" : h[0];
            addresses.add(scheme + host + ":" + h[1]);
        }

        Config config = new Config();
        BaseConfig<?> base;
        Integer minIdle = Protocol.envInt("REDISSON_MIN_IDLE");
        Integer scan = Protocol.envInt("REDISSON_SCAN_INTERVAL");
        if (target.mode.equals("cluster")) {
            ClusterServersConfig c = config.useClusterServers().addNodeAddress(addresses.toArray(new String[0]));
            if (minIdle != null) c.setMasterConnectionMinimumIdleSize(minIdle);
            if (scan != null) c.setScanInterval(scan);
            settings.put("min_idle", c.getMasterConnectionMinimumIdleSize());
            settings.put("scan_interval_ms", c.getScanInterval());
            base = c;
        } else if (target.mode.equals("sentinel")) {
            SentinelServersConfig c = config.useSentinelServers().setMasterName(target.path0);
            for (String a : addresses) c.addSentinelAddress(a);
            String sentinelPassword = Protocol.env("FAILPROBE_SENTINEL_PASSWORD");
            if (sentinelPassword != null) c.setSentinelPassword(sentinelPassword);
            if (target.path1 != null) c.setDatabase(Integer.parseInt(target.path1));
            if (minIdle != null) c.setMasterConnectionMinimumIdleSize(minIdle);
            if (scan != null) c.setScanInterval(scan);
            settings.put("master", target.path0);
            settings.put("min_idle", c.getMasterConnectionMinimumIdleSize());
            settings.put("scan_interval_ms", c.getScanInterval());
            base = c;
        } else {
            SingleServerConfig c = config.useSingleServer().setAddress(addresses.get(0));
            if (target.path0 != null) c.setDatabase(Integer.parseInt(target.path0));
            if (minIdle != null) c.setConnectionMinimumIdleSize(minIdle);
            settings.put("min_idle", c.getConnectionMinimumIdleSize());
            base = c;
        }
        String password = Protocol.env("FAILPROBE_PASSWORD");
        if (password != null) base.setPassword(password);
        if (target.username != null) base.setUsername(target.username);
        // FAILPROBE_CLIENT_NAME (adapters/README.md): Redisson names every connection it opens
        // with it (each node's pools, pub/sub, the sentinels').
        String clientName = Protocol.env("FAILPROBE_CLIENT_NAME");
        if (clientName != null) {
            base.setClientName(clientName);
            settings.put("client_name", clientName);
        }
        String timeout = Protocol.env("REDISSON_TIMEOUT");
        if (timeout == null) timeout = Protocol.env("FAILPROBE_TIMEOUT_MS");
        if (timeout != null && !timeout.equals("default")) base.setTimeout(Integer.parseInt(timeout));
        Integer connectTimeout = Protocol.envInt("REDISSON_CONNECT_TIMEOUT");
        if (connectTimeout != null) base.setConnectTimeout(connectTimeout);
        Integer attempts = Protocol.envInt("REDISSON_RETRY_ATTEMPTS");
        if (attempts != null) base.setRetryAttempts(attempts);
        Integer delay = Protocol.envInt("REDISSON_RETRY_DELAY");
        if (delay != null) {
            base.setRetryDelay(new EqualJitterDelay(java.time.Duration.ofMillis(delay), java.time.Duration.ofMillis(delay)));
        }
        Integer ping = Protocol.envInt("REDISSON_PING_INTERVAL");
        if (ping != null) base.setPingConnectionInterval(ping);
        if (target.tls && Protocol.env("FAILPROBE_TLS_CA_FILE") != null) {
            settings.put("tls_ca", "FAILPROBE_TLS_CA_FILE is not read: give -Djavax.net.ssl.trustStore in FAILPROBE_JAVA_OPTS");
        }
        settings.put("timeout_ms", base.getTimeout());
        settings.put("connect_timeout_ms", base.getConnectTimeout());
        settings.put("retry_attempts", base.getRetryAttempts());
        Object retryDelay = base.getRetryDelay();
        if (retryDelay instanceof EqualJitterDelay) {
            EqualJitterDelay d = (EqualJitterDelay) retryDelay;
            retryDelay = "EqualJitterDelay(" + d.getBaseDelay().toMillis() + " ms, " + d.getMaxDelay().toMillis() + " ms)";
        }
        settings.put("retry_delay", String.valueOf(retryDelay));
        settings.put("ping_interval_ms", base.getPingConnectionInterval());

        // Connected before the hello: Redisson.create opens its pools (and reads the topology).
        RedissonClient client = Protocol.untilConnected(() -> Redisson.create(config));
        RScript script = client.getScript(StringCodec.INSTANCE);
        Function<List<String>, CompletionStage<Object>> execute = argv -> {
            String name = argv.get(0).toUpperCase();
            if (name.equals("EVAL") && argv.size() >= 3) {
                int n = Integer.parseInt(argv.get(2));
                List<Object> keys = new ArrayList<>(argv.subList(3, 3 + n));
                Object[] values = argv.subList(3 + n, argv.size()).toArray();
                return script.<Object>evalAsync(RScript.Mode.READ_WRITE, argv.get(1), RScript.ReturnType.INTEGER, keys, values);
            }
            if (name.equals("GET") && argv.size() == 2) {
                return client.<Object>getBucket(argv.get(1), StringCodec.INSTANCE).getAsync();
            }
            return CompletableFuture.failedFuture(new UnsupportedOperationException("the Redisson adapter sends EVAL and GET only, not " + name));
        };

        String version = Redisson.class.getPackage().getImplementationVersion();
        if (version == null) {
            try (var in = Redisson.class.getResourceAsStream("/META-INF/maven/org.redisson/redisson/pom.properties")) {
                if (in != null) {
                    java.util.Properties p = new java.util.Properties();
                    p.load(in);
                    version = p.getProperty("version");
                }
            }
        }
        protocol.hello("redisson", version != null ? version : "3.52.0", settings);
        protocol.serve(execute, RedissonAdapter::kind, client::shutdown);
    }

    private static String kind(Throwable e) {
        if (e instanceof RedisTimeoutException) return "timeout";
        if (e instanceof RedisConnectionException || e instanceof WriteRedisConnectionException
                || e instanceof RedisNodeNotFoundException) {
            return "connection";
        }
        if (e instanceof RedisException) {
            String m = String.valueOf(e.getMessage());
            if (m.contains("timed out") || m.contains("timeout")) return "timeout";
            if (m.contains("connection") || m.contains("Connection")) return "connection";
            return "server";
        }
        return "other";
    }
}

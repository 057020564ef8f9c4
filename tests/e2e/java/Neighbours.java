// A Java NIO neighbour for gosight's end-to-end tests (JDK 17, no dependencies):
// gosight's sockops/sk_msg programs must leave the sockets of processes it does not
// trace exactly as the kernel made them.
//
// A server thread accepts connections on 127.0.0.1 and, on each, writes 1000 known
// bytes (derived from the client's port), waits for "more", writes 1000 other bytes
// and waits for the client to close. The client makes N connections one after
// another (SocketChannel + Selector) and on each checks:
//   - the Selector wakes for the first bytes within 2 s             -> missed_wakeups
//   - socket().getInputStream().available(), which is ioctl(FIONREAD), then says
//     1000                                                          -> wrong_available
//   - the non-blocking reads return exactly the bytes sent, and so do the blocking
//     reads (channel switched to blocking mode) of the second 1000  -> wrong_bytes
//   - no read waits longer than 2 s                                 -> stalls
// It prints one JSON line {"connections", "missed_wakeups", "wrong_available",
// "wrong_bytes", "stalls", "errors", "server_errors", "available_seen", "seconds"};
// every count but connections is 0 on a healthy machine. It stops early (with fewer
// connections) after the deadline.
//
// Usage: javac -d DIR Neighbours.java && java -cp DIR Neighbours [connections] [deadline-seconds]

import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.Arrays;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicInteger;

public class Neighbours {
    static final int SIZE = 1000;
    static final int STALL_MS = 2000;
    static final AtomicInteger serverErrors = new AtomicInteger();

    static byte[] payload(int port, int round) {
        byte[] b = new byte[SIZE];
        new Random(port * 2L + round).nextBytes(b);
        return b;
    }

    static void serve(ServerSocketChannel listener) {
        while (true) {
            SocketChannel c;
            try {
                c = listener.accept();
            } catch (IOException e) {
                return;
            }
            try (c) {
                int port = ((InetSocketAddress) c.getRemoteAddress()).getPort();
                c.socket().setSoTimeout(STALL_MS);
                InputStream in = c.socket().getInputStream();
                c.write(ByteBuffer.wrap(payload(port, 0)));
                byte[] more = in.readNBytes(4);
                if (!Arrays.equals(more, "more".getBytes())) {
                    serverErrors.incrementAndGet();
                    continue;
                }
                c.write(ByteBuffer.wrap(payload(port, 1)));
                while (in.read() >= 0) {
                }
            } catch (IOException e) {
                serverErrors.incrementAndGet();
            }
        }
    }

    public static void main(String[] args) throws Exception {
        int connections = args.length > 0 ? Integer.parseInt(args[0]) : 300;
        double deadline = args.length > 1 ? Double.parseDouble(args[1]) : 20.0;
        ServerSocketChannel listener = ServerSocketChannel.open();
        listener.bind(new InetSocketAddress("127.0.0.1", 0), 128);
        InetSocketAddress addr = (InetSocketAddress) listener.getLocalAddress();
        Thread server = new Thread(() -> serve(listener));
        server.setDaemon(true);
        server.start();

        int done = 0, missedWakeups = 0, wrongAvailable = 0, wrongBytes = 0, stalls = 0, errors = 0;
        TreeMap<Integer, Integer> availableSeen = new TreeMap<>();
        Selector selector = Selector.open();
        long start = System.nanoTime();
        for (int i = 0; i < connections; i++) {
            if ((System.nanoTime() - start) / 1e9 > deadline) {
                break;
            }
            try (SocketChannel sc = SocketChannel.open(addr)) {
                int port = ((InetSocketAddress) sc.getLocalAddress()).getPort();
                sc.configureBlocking(false);
                SelectionKey key = sc.register(selector, SelectionKey.OP_READ);
                if (selector.select(STALL_MS) == 0) {
                    missedWakeups++;
                }
                selector.selectedKeys().clear();
                // SocketChannelImpl.available(): ioctl(FIONREAD) on the socket.
                int avail = sc.socket().getInputStream().available();
                availableSeen.merge(avail, 1, Integer::sum);
                if (avail != SIZE) {
                    wrongAvailable++;
                }
                ByteBuffer buf = ByteBuffer.allocate(SIZE);
                long readStart = System.nanoTime();
                boolean stalled = false;
                while (buf.hasRemaining()) {
                    int n = sc.read(buf);
                    if (n < 0) {
                        break;
                    }
                    if (n == 0) {
                        if ((System.nanoTime() - readStart) / 1_000_000 > STALL_MS) {
                            stalled = true;
                            break;
                        }
                        selector.select(100);
                        selector.selectedKeys().clear();
                    }
                }
                boolean bad = buf.hasRemaining() || !Arrays.equals(buf.array(), payload(port, 0));
                // The second 1000 bytes through a blocking read that has to wait.
                key.cancel();
                selector.selectNow();
                sc.configureBlocking(true);
                sc.socket().setSoTimeout(STALL_MS);
                if (!stalled) {
                    sc.write(ByteBuffer.wrap("more".getBytes()));
                    try {
                        byte[] second = sc.socket().getInputStream().readNBytes(SIZE);
                        bad |= !Arrays.equals(second, payload(port, 1));
                    } catch (SocketTimeoutException e) {
                        stalled = true;
                    }
                }
                wrongBytes += bad ? 1 : 0;
                stalls += stalled ? 1 : 0;
                done++;
            } catch (IOException e) {
                errors++;
                System.err.println("connection " + i + ": " + e);
            }
        }
        double seconds = Math.round((System.nanoTime() - start) / 1e7) / 100.0;
        StringBuilder seen = new StringBuilder();
        availableSeen.forEach((k, v) -> seen.append(seen.length() == 0 ? "" : ",").append("\"").append(k).append("\":").append(v));
        System.out.println("{\"connections\":" + done + ",\"missed_wakeups\":" + missedWakeups
                + ",\"wrong_available\":" + wrongAvailable + ",\"wrong_bytes\":" + wrongBytes + ",\"stalls\":" + stalls
                + ",\"errors\":" + errors + ",\"server_errors\":" + serverErrors.get()
                + ",\"available_seen\":{" + seen + "},\"seconds\":" + seconds + "}");
        listener.close();
    }
}

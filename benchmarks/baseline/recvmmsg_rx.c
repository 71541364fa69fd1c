/* Baseline receiver for asbru's capture benchmarks: what a minimal C program does with
 * recvmmsg.  Receives UDP datagrams in batches, decodes the header, and memcpy-scatters
 * each payload into a large ring: slot = (seq % nslot), row = src.  Counts packets and
 * bytes from the first datagram until N packets arrived or no datagram came for
 * --timeout seconds.
 *
 * usage: recvmmsg_rx PORT NPKT [--addr A] [--nsrc N] [--ring-mib M] [--timeout S]
 *                    [--maxsize B] [--batch K] [--rcvbuf BYTES] [--wait-ms W] [--layout L]
 *                    [--hdr chips|vdif] [--fps F]
 * --hdr chips (default): the 16-byte CHIPS header (roach u8 at offset 0, 1-based source;
 *   seq u64 big-endian at offset 8, 1-based); payload = the rest of the datagram.
 * --hdr vdif: a VDIF frame with a 32-byte header of little-endian 32-bit words:
 *   src = thread_id = (word3 >> 16) & 0x3ff; seq = seconds * fps + frame with
 *   seconds = word0 & 0x3fffffff and frame = word1 & 0xffffff (--fps, default 1000: the
 *   frames per second); payload = the datagram less 32 bytes.  Invalid (counted, not
 *   placed): length <= 32, the invalid bit (word0 bit 31) set, a frame-length field
 *   (word2 bits 0-23, 8-byte units) other than the datagram length, src >= nsrc.
 * Either format: a payload size other than the first packet's is invalid too.
 * --layout rows (default): one memcpy per packet into [slot][src][payload];
 * --layout chips (--hdr chips only): the CHIPS ring layout [slot][chan][src][32 bytes], one
 * 32-byte copy per channel -- the same placement work a CHIPS capture must do.
 * --wait-ms: sleep W ms after binding before reading; W < 0: wait for a line on stdin
 * ("drain" mode: a sender pre-fills the socket buffer, then only the receiver's own work
 * is timed).
 * stdout: "ready port=P" once bound (flushed), then one result line:
 *   "rx packets=N bytes=B invalid=I seconds=S pps=X gbps=G"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHIPS_HDR 16
#define VDIF_HDR 32

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t be64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int main(int argc, char **argv) {
    int chips_layout = 0, vdif = 0;
    long long fps = 1000;
    if (argc < 3) {
        fprintf(stderr, "usage: %s PORT NPKT [--addr A] [--nsrc N] [--ring-mib M] [--timeout S] "
                        "[--maxsize B] [--batch K] [--rcvbuf BYTES] [--wait-ms W] [--layout rows|chips] "
                        "[--hdr chips|vdif] [--fps F]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    long long npkt = atoll(argv[2]);
    const char *addr = "127.0.0.1";
    int nsrc = 4, batch = 64, maxsize = 9000;
    long long ring_mib = 256, rcvbuf = 256LL << 20;
    double timeout = 5.0;
    long wait_ms = 0;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--addr")) addr = argv[i + 1];
        else if (!strcmp(argv[i], "--nsrc")) nsrc = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ring-mib")) ring_mib = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--timeout")) timeout = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--maxsize")) maxsize = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rcvbuf")) rcvbuf = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--wait-ms")) wait_ms = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--fps")) fps = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--layout")) {
            if (!strcmp(argv[i + 1], "chips")) chips_layout = 1;
            else if (!strcmp(argv[i + 1], "rows")) chips_layout = 0;
            else { fprintf(stderr, "--layout: rows or chips, not %s\n", argv[i + 1]); return 2; }
        } else if (!strcmp(argv[i], "--hdr")) {
            if (!strcmp(argv[i + 1], "vdif")) vdif = 1;
            else if (!strcmp(argv[i + 1], "chips")) vdif = 0;
            else { fprintf(stderr, "--hdr: chips or vdif, not %s\n", argv[i + 1]); return 2; }
        }
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    const size_t hdr = vdif ? VDIF_HDR : CHIPS_HDR;
    if (vdif && chips_layout) {
        fprintf(stderr, "--layout chips needs --hdr chips (a VDIF frame is placed as one block)\n");
        return 2;
    }
    if (nsrc < 1 || batch < 1 || batch > 1024 || maxsize <= (int)hdr || ring_mib < 1 || fps < 1) {
        fprintf(stderr, "bad option value\n");
        return 2;
    }

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) { perror("socket"); return 1; }
    int bufsz = rcvbuf > 0x7fffffff ? 0x7fffffff : (int)rcvbuf;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsz, sizeof bufsz) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof bufsz);
    struct timeval tv = { (time_t)timeout, (suseconds_t)((timeout - (time_t)timeout) * 1e6) };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) { fprintf(stderr, "bad --addr\n"); return 2; }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("bind"); return 1; }
    socklen_t salen = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &salen);

    /* Ring: the payload size is learnt from the first packet; pre-faulted up front, on
     * transparent huge pages where the kernel allows it (numpy asks for them too for large
     * arrays; without them TLB misses over 256 MiB cost the baseline a factor 2-3). */
    size_t ring_bytes = (size_t)ring_mib << 20;
    unsigned char *ring = NULL;
    if (posix_memalign((void **)&ring, 2u << 20, ring_bytes) != 0) ring = NULL;
#ifdef MADV_HUGEPAGE
    if (ring) madvise(ring, ring_bytes, MADV_HUGEPAGE);
#endif
    unsigned char *bufs = malloc((size_t)batch * maxsize);
    struct mmsghdr *msgs = calloc(batch, sizeof *msgs);
    struct iovec *iovs = calloc(batch, sizeof *iovs);
    if (!ring || !bufs || !msgs || !iovs) { fprintf(stderr, "out of memory\n"); return 1; }
    memset(ring, 0, ring_bytes);
    for (int i = 0; i < batch; i++) {
        iovs[i].iov_base = bufs + (size_t)i * maxsize;
        iovs[i].iov_len = maxsize;
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    printf("ready port=%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    if (wait_ms < 0) {
        char line[16];
        if (!fgets(line, sizeof line, stdin)) return 1;
    } else if (wait_ms > 0) {
        struct timespec ws = { wait_ms / 1000, (wait_ms % 1000) * 1000000L };
        while (nanosleep(&ws, &ws) < 0 && errno == EINTR) {}
    }

    long long got = 0, invalid = 0, bytes = 0;
    size_t payload = 0, nslot = 0;
    double t0 = 0, t1 = 0;
    while (got + invalid < npkt) {
        int n = recvmmsg(fd, msgs, batch, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            break; /* EAGAIN: timeout */
        }
        if (t0 == 0) t0 = now();
        for (int i = 0; i < n; i++) {
            const unsigned char *p = bufs + (size_t)i * maxsize;
            size_t len = msgs[i].msg_len;
            int src;
            uint64_t seq;
            if (vdif) {
                if (len <= VDIF_HDR) { invalid++; continue; }
                uint32_t w0 = le32(p), w1 = le32(p + 4), w2 = le32(p + 8), w3 = le32(p + 12);
                if ((w0 >> 31) || (size_t)(w2 & 0xffffff) * 8 != len) { invalid++; continue; }
                src = (int)((w3 >> 16) & 0x3ff);
                seq = (uint64_t)(w0 & 0x3fffffff) * (uint64_t)fps + (w1 & 0xffffff);
            } else {
                if (len < CHIPS_HDR) { invalid++; continue; }
                src = (int)p[0] - 1;
                seq = be64(p + 8) - 1;
            }
            if (payload == 0) {
                payload = len - hdr;
                nslot = payload ? ring_bytes / (payload * (size_t)nsrc) : 0;
                if (nslot == 0) { fprintf(stderr, "ring too small\n"); return 1; }
            }
            if (src < 0 || src >= nsrc || len - hdr != payload) { invalid++; continue; }
            if (chips_layout) {
                size_t nchan = payload / 32;
                unsigned char *slot = ring + (seq % nslot) * nsrc * payload;
                for (size_t c = 0; c < nchan; c++)
                    memcpy(slot + (c * nsrc + src) * 32, p + CHIPS_HDR + c * 32, 32);
            } else {
                memcpy(ring + ((seq % nslot) * nsrc + src) * payload, p + hdr, payload);
            }
            got++;
            bytes += len;
        }
        t1 = now();
    }
    double secs = t1 > t0 ? t1 - t0 : 0.0;
    printf("rx packets=%lld bytes=%lld invalid=%lld seconds=%.6f pps=%.1f gbps=%.3f\n", got, bytes,
           invalid, secs, secs > 0 ? got / secs : 0.0, secs > 0 ? bytes * 8e-9 / secs : 0.0);
    /* keep the ring "used" so the compiler cannot drop the copies */
    volatile unsigned char sink = ring[ring_bytes / 2];
    (void)sink;
    close(fd);
    return 0;
}

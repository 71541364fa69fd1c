/* Baseline sender for asbru's writer/capture benchmarks: N packets of a header + PAYLOAD
 * bytes, sent with sendmmsg as (header, payload) iovec pairs pointing into a header array
 * and one payload array (no payload copy), time-major over --nsrc sources: packet i has
 * src = i % nsrc and time index seq = seq0 + i / nsrc.
 *
 * --hdr chips (default): a 16-byte CHIPS header (roach u8 at 0 = src + 1; nchan u8 at 2 =
 *   PAYLOAD / 32; nsubband u8 at 3 = 1; nroach u8 at 5 = nsrc; seq u64 big-endian at 8).
 * --hdr vdif: a VDIF frame, 32-byte header of eight little-endian 32-bit words:
 *   word0 = seconds (bits 0-29) = seq / fps, legacy (bit 30) = 0, invalid (bit 31) = 0;
 *   word1 = frame number (bits 0-23) = seq % fps, ref_epoch (bits 24-29) = 0;
 *   word2 = frame length in 8-byte units (bits 0-23) = (32 + PAYLOAD) / 8,
 *           log2_nchan (bits 24-28) = 0, version (bits 29-31) = 0;
 *   word3 = station_id (bits 0-15) = 0, thread_id (bits 16-25) = src,
 *           bits_per_sample_minus_1 (bits 26-30) = 7, is_complex (bit 31) = 0;
 *   words 4-7 = 0.  PAYLOAD must be a positive multiple of 8; --fps (default 1000) is the
 *   frames per second (1 .. 2^24).
 *
 * usage: sendmmsg_tx PORT NPKT PAYLOAD [--addr A] [--nsrc N] [--batch K] [--seq0 S]
 *                    [--hdr chips|vdif] [--fps F] [--src0 S] [--sport P]
 * --src0 S: the sources are numbered S .. S + nsrc - 1 (default 0): several senders then
 *   share one stream's sources (one per port, or per receive thread).
 * stdout: "tx packets=N bytes=B errors=E seconds=S pps=X gbps=G"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHIPS_HDR 16
#define VDIF_HDR 32
#define HDR_MAX 32

static void put_le32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s PORT NPKT PAYLOAD [--addr A] [--nsrc N] [--batch K] [--seq0 S] "
                        "[--hdr chips|vdif] [--fps F]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    long long npkt = atoll(argv[2]);
    int payload = atoi(argv[3]);
    const char *addr = "127.0.0.1";
    int nsrc = 4, batch = 64;
    unsigned long long seq0 = 1;
    int vdif = 0, src0 = 0, sport = 0;
    long long fps = 1000;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--addr")) addr = argv[i + 1];
        else if (!strcmp(argv[i], "--nsrc")) nsrc = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seq0")) seq0 = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--fps")) fps = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--src0")) src0 = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--sport")) sport = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--hdr")) {
            if (!strcmp(argv[i + 1], "vdif")) vdif = 1;
            else if (!strcmp(argv[i + 1], "chips")) vdif = 0;
            else { fprintf(stderr, "--hdr: chips or vdif, not %s\n", argv[i + 1]); return 2; }
        }
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    if (port <= 0 || npkt < 0 || payload < 0 || payload > 65000 || nsrc < 1 ||
        src0 < 0 || nsrc + src0 > (vdif ? 1024 : 255) || batch < 1 || batch > 1024 || fps < 1 || fps > (1LL << 24) ||
        (vdif && (payload < 8 || payload % 8 != 0))) {
        fprintf(stderr, "bad argument value\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) { perror("socket"); return 1; }
    int sndbuf = 64 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    if (sport > 0) {
        /* a chosen source port: a receiver that steers by source (a SO_REUSEPORT or
         * PACKET_FANOUT group) then gives each sender the socket the benchmark means */
        struct sockaddr_in la;
        memset(&la, 0, sizeof la);
        la.sin_family = AF_INET;
        la.sin_port = htons(sport);
        if (bind(fd, (struct sockaddr *)&la, sizeof la) < 0) { perror("bind --sport"); return 1; }
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) { fprintf(stderr, "bad --addr\n"); return 2; }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("connect"); return 1; }

    const int hdr = vdif ? VDIF_HDR : CHIPS_HDR;
    unsigned char *hdrs = calloc(batch, HDR_MAX);
    unsigned char *data = malloc((size_t)nsrc * (payload ? payload : 1));
    struct mmsghdr *msgs = calloc(batch, sizeof *msgs);
    struct iovec *iovs = calloc(2 * (size_t)batch, sizeof *iovs);
    if (!hdrs || !data || !msgs || !iovs) { fprintf(stderr, "out of memory\n"); return 1; }
    for (size_t i = 0; i < (size_t)nsrc * payload; i++) data[i] = (unsigned char)(i * 7 + 3);
    for (int i = 0; i < batch; i++) {
        msgs[i].msg_hdr.msg_iov = &iovs[2 * i];
        msgs[i].msg_hdr.msg_iovlen = 2;
    }

    long long sent = 0, errors = 0, bytes = 0;
    double t0 = now();
    while (sent < npkt) {
        int k = npkt - sent < batch ? (int)(npkt - sent) : batch;
        for (int i = 0; i < k; i++) {
            long long pkt = sent + i;
            int src = (int)(pkt % nsrc);
            unsigned long long seq = seq0 + (unsigned long long)(pkt / nsrc);
            unsigned char *h = hdrs + (size_t)i * HDR_MAX;
            memset(h, 0, hdr);
            if (vdif) {
                unsigned long long seconds = seq / (unsigned long long)fps;
                unsigned long long frame = seq % (unsigned long long)fps;
                put_le32(h, (uint32_t)(seconds & 0x3fffffffu));
                put_le32(h + 4, (uint32_t)(frame & 0xffffffu));
                put_le32(h + 8, (uint32_t)(((VDIF_HDR + payload) / 8) & 0xffffff));
                put_le32(h + 12, ((uint32_t)(src + src0) & 0x3ffu) << 16 | (uint32_t)7 << 26);
            } else {
                h[0] = (unsigned char)(src + src0 + 1);
                h[2] = (unsigned char)(payload / 32);
                h[3] = 1;
                h[5] = (unsigned char)nsrc;
                for (int b = 0; b < 8; b++) h[8 + b] = (unsigned char)(seq >> (56 - 8 * b));
            }
            iovs[2 * i].iov_base = h;
            iovs[2 * i].iov_len = hdr;
            iovs[2 * i + 1].iov_base = data + (size_t)src * payload;
            iovs[2 * i + 1].iov_len = payload;
        }
        int n = sendmmsg(fd, msgs, k, 0);
        if (n < 0) {
            /* ECONNREFUSED: an ICMP error from an earlier datagram; ENOBUFS: retry */
            if (errno == EINTR || errno == ENOBUFS || errno == EAGAIN || errno == ECONNREFUSED) {
                errors++;
                continue;
            }
            perror("sendmmsg");
            break;
        }
        for (int i = 0; i < n; i++) bytes += msgs[i].msg_len;
        sent += n;
    }
    double secs = now() - t0;
    printf("tx packets=%lld bytes=%lld errors=%lld seconds=%.6f pps=%.1f gbps=%.3f\n", sent, bytes,
           errors, secs, secs > 0 ? sent / secs : 0.0, secs > 0 ? bytes * 8e-9 / secs : 0.0);
    close(fd);
    return 0;
}

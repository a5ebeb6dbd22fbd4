/*
 * nvme-offset-probe: does O_DIRECT I/O from buffers at an in-page offset reach the disk intact?
 *
 * The bug it looks for: before Linux 5.12 (the swiotlb min_align_mask series), a buffer bounced
 * through SWIOTLB lost its offset inside the page, and NVMe, which builds PRP lists from the DMA
 * addresses' in-page offsets, then moved the wrong bytes: writes that succeed while the disk gets
 * wrong data, EIO, "Invalid SGL for payload". dd never shows it (it page-aligns its buffers).
 *
 * For each buffer layout (contig: the buffer's pages are physically contiguous, one DMA segment;
 * scattered: every page its own segment) and each case (write buffer at in-page offset A in
 * 0, 512, .., 3584; size 512 .. 12288 in 512 steps), it:
 *   1. writes a pattern unique to the case with O_DIRECT from wbuf+A to the case's own 16 KiB
 *      region of the target;
 *   2. reads the region back through the page cache after dropping it (reference read: the page
 *      cache's pages are whole, page-aligned pages, so this path has no in-page offset to lose);
 *      a mismatch there means the disk got wrong bytes: write-corrupt;
 *   3. reads the region with O_DIRECT into rbuf+B, B another in-page offset (never 0, never A);
 *      a mismatch with what the reference read saw: read-corrupt.
 * Errors (-1 or a short transfer) are write-error / read-error (and ref-error for step 2).
 *
 * Output, one token list per line (key=value, no spaces inside values):
 *   PROBE version=1 target=... type=blockdev|file lbs=512 bytes=... cases=384 base=0 stride=16384
 *   BUF layout=contig|scattered pfns=wbuf:PFN+..,rbuf:PFN+.. phys=contiguous|scattered|not-contiguous|not-scattered|unknown
 *   FAIL layout=.. woff=A roff=B size=N case=I kind=K kinds=K1,K2 first=F want=0xWW got=0xGG ndiff=D errno=E
 *   SUMMARY layout=.. cases=192 ok=.. failed=.. write-error=.. write-corrupt=.. read-error=.. read-corrupt=.. ref-error=..
 *   TOTAL cases=384 ok=.. failed=.. write-error=.. ... elapsed_ms=..
 *   ERROR msg=...           (setup error, exit 2)
 * `kind` is the first of the case's kinds in the order write-error, write-corrupt, ref-error,
 * read-error, read-corrupt; first/want/got/ndiff describe that kind (first: byte index in the
 * transfer, -1 for errors). Exit 0: every case passed; 1: some case failed; 2: setup error.
 *
 * --verify (-V): read-only; compares every case's region with its pattern (e.g. on the host, on
 * the raw image after the guest powered off) and reports kind=disk-mismatch / disk-error.
 *
 * Usage: nvme-offset-probe [-V] [-l contig|scattered] (DEVICE-OR-FILE | --serial SERIAL)
 * It touches only the target: the regions [0, 384 * 16 KiB). A regular file is extended to that
 * size if shorter. A block device that is mounted, or has a mounted partition, is refused.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define NOFF 8                 /* in-page offsets 0, 512, .., 3584 */
#define NSIZE 24               /* sizes 512 .. 12288 */
#define NCASE (NOFF * NSIZE)   /* per layout */
#define STRIDE (16 * 1024)     /* each case's region on the target */
#define BUFPAGES 4             /* 3584 + 12288 <= 4 pages */
#define NLAYOUT 2

enum kind { K_WERR, K_WCORRUPT, K_REFERR, K_RERR, K_RCORRUPT, K_DISKMIS, K_DISKERR, NKIND };
static const char *kind_name[NKIND] = {"write-error", "write-corrupt", "ref-error", "read-error",
                                       "read-corrupt", "disk-mismatch", "disk-error"};
static const char *layout_name[NLAYOUT] = {"contig", "scattered"};

static void die(const char *fmt, const char *arg, int err) {
    printf("ERROR msg=");
    for (const char *p = fmt; *p; p++) {
        if (*p == '%' && p[1] == 's') { fputs(arg ? arg : "", stdout); p++; }
        else putchar(*p == ' ' ? '_' : *p);
    }
    if (err) printf(":%s", strerror(err));
    putchar('\n');
    fflush(stdout);
    exit(2);
}

static uint64_t splitmix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* the case's pattern: 8-byte words from its global index and the word index; never all-zero */
static void fill_pattern(uint8_t *p, size_t n, int gcase) {
    for (size_t i = 0; i < n; i += 8) {
        uint64_t w = splitmix(((uint64_t)(gcase + 1) << 32) ^ (i / 8)) | 1;
        memcpy(p + i, &w, 8);
    }
}

static int read_off(int a) { return (((a / 512) + 3) % 7 + 1) * 512; } /* never 0, never a */

/* pagemap: the PFN of each page (0 when unknown: no CAP_SYS_ADMIN or no pagemap) */
static int pagemap_fd = -2;
static uint64_t pfn_of(void *addr) {
    if (pagemap_fd == -2) pagemap_fd = open("/proc/self/pagemap", O_RDONLY);
    if (pagemap_fd < 0) return 0;
    uint64_t e;
    if (pread(pagemap_fd, &e, 8, ((uintptr_t)addr / PAGE) * 8) != 8) return 0;
    if (!(e >> 63)) return 0;
    return e & ((1ULL << 55) - 1);
}

static uint8_t *map_pages(size_t n) {
    uint8_t *p = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap", NULL, errno);
#ifdef MADV_NOHUGEPAGE
    madvise(p, n * PAGE, MADV_NOHUGEPAGE);
#endif
    return p;
}

/* -1 unknown, 1 physically contiguous run, 0 not */
static int phys_contig(uint8_t *p, int n) {
    uint64_t first = pfn_of(p);
    if (!first) return -1;
    for (int i = 1; i < n; i++)
        if (pfn_of(p + (size_t)i * PAGE) != first + i) return 0;
    return 1;
}
/* -1 unknown, 1 no two neighbouring pages physically adjacent, 0 some are */
static int phys_scattered(uint8_t *p, int n) {
    uint64_t prev = pfn_of(p);
    if (!prev) return -1;
    for (int i = 1; i < n; i++) {
        uint64_t cur = pfn_of(p + (size_t)i * PAGE);
        if (cur == prev + 1) return 0;
        prev = cur;
    }
    return 1;
}

/*
 * A 4-page buffer of the layout. With PFNs visible (root: /proc/self/pagemap), pages of a pool
 * faulted in ascending order are picked by PFN and moved with mremap (which keeps the physical
 * page) into a fresh 4-page window: contig takes 4 pages with consecutive PFNs, so the buffer is
 * one physical run (one DMA segment); scattered takes 4 pages no two of which are physically
 * adjacent, so every page is its own segment. Without PFNs it falls back to the fault order alone:
 * ascending (the page allocator tends to hand out ascending PFNs) or descending (page i+1 below
 * page i). *phys: 1 the layout is proven by PFN, 0 it could not be had, -1 unknown (no PFNs).
 */
#define POOL 512
static uint8_t *pool_pages(int descending) {
    uint8_t *pool = map_pages(POOL);
    for (int i = 0; i < POOL; i++) pool[(size_t)(descending ? POOL - 1 - i : i) * PAGE] = 1;
    return pool;
}
static int cmp_pfn(const void *a, const void *b) {
    uint64_t x = ((const uint64_t *)a)[0], y = ((const uint64_t *)b)[0];
    return x < y ? -1 : x > y;
}
static uint8_t *get_buf(int layout, int *phys) {
    static uint64_t pf[POOL][2]; /* pfn, page index */
    for (int attempt = 0; attempt < 8; attempt++) {
        uint8_t *pool = pool_pages(0);
        for (int i = 0; i < POOL; i++) { pf[i][0] = pfn_of(pool + (size_t)i * PAGE); pf[i][1] = i; }
        if (!pf[0][0]) { munmap(pool, POOL * PAGE); break; } /* no PFNs: fall back */
        qsort(pf, POOL, sizeof pf[0], cmp_pfn);
        int pick[BUFPAGES], n = 0;
        if (layout == 0) {
            for (int k = 0; k + BUFPAGES <= POOL && !n; k++) {
                int run = 1;
                while (run < BUFPAGES && pf[k + run][0] == pf[k][0] + run) run++;
                if (run == BUFPAGES) for (n = 0; n < BUFPAGES; n++) pick[n] = (int)pf[k + n][1];
            }
        } else {
            /* every other PFN-sorted page that has a gap of >1 to the previous pick, highest first */
            uint64_t last = 0;
            for (int k = POOL - 1; k >= 0 && n < BUFPAGES; k--)
                if (!n || last - pf[k][0] > 1) { pick[n++] = (int)pf[k][1]; last = pf[k][0]; }
        }
        if (n == BUFPAGES) {
            uint8_t *dst = map_pages(BUFPAGES);
            for (int i = 0; i < BUFPAGES; i++)
                if (mremap(pool + (size_t)pick[i] * PAGE, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED,
                           dst + (size_t)i * PAGE) == MAP_FAILED)
                    die("mremap", NULL, errno);
            munmap(pool, POOL * PAGE);
            mlock(dst, BUFPAGES * PAGE);
            *phys = layout == 0 ? phys_contig(dst, BUFPAGES) : phys_scattered(dst, BUFPAGES);
            if (*phys == 1) return dst;
            munmap(dst, BUFPAGES * PAGE);
        }
        /* keep this pool: the next one gets other pages */
    }
    uint8_t *p = map_pages(BUFPAGES);
    for (int i = 0; i < BUFPAGES; i++) p[(size_t)(layout ? BUFPAGES - 1 - i : i) * PAGE] = 1;
    mlock(p, BUFPAGES * PAGE);
    *phys = layout == 0 ? phys_contig(p, BUFPAGES) : phys_scattered(p, BUFPAGES);
    if (*phys > 0) *phys = 1;
    return p;
}

static void print_pfns(const char *name, uint8_t *p) {
    printf("%s:", name);
    for (int i = 0; i < BUFPAGES; i++) printf("%s%" PRIx64, i ? "+" : "", pfn_of(p + (size_t)i * PAGE));
}

/* the BUF line's phys=: the layout proven by PFN, not had, or unknown (no PFNs readable) */
static const char *phys_word(int layout, int w, int r) {
    if (w < 0 || r < 0) return "unknown";
    if (w && r) return layout == 0 ? "contiguous" : "scattered";
    return layout == 0 ? "not-contiguous" : "not-scattered";
}

static long find_serial(const char *serial, char *out, size_t outlen) {
    DIR *d = opendir("/sys/block");
    if (!d) die("no /sys/block", NULL, errno);
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[512], buf[256];
        snprintf(path, sizeof path, "/sys/block/%s/device/serial", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *s = buf;
        while (*s && isspace((unsigned char)*s)) s++;
        char *t = s + strlen(s);
        while (t > s && isspace((unsigned char)t[-1])) *--t = 0;
        if (strcmp(s, serial) == 0) {
            if (found++) die("more than one disk has serial %s", serial, 0);
            snprintf(out, outlen, "/dev/%s", e->d_name);
        }
    }
    closedir(d);
    if (!found) die("no disk with serial %s in /sys/block", serial, 0);
    return 0;
}

/* the sysfs directory of a block device number, e.g. /sys/devices/.../block/nvme0n1 */
static int sysfs_of(unsigned maj, unsigned mi, char out[PATH_MAX]) {
    char link[64];
    snprintf(link, sizeof link, "/sys/dev/block/%u:%u", maj, mi);
    return realpath(link, out) ? 0 : -1;
}

/* refuse a block device that is mounted, or one of whose partitions is */
static void refuse_if_mounted(const char *dev, struct stat *st) {
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (!f) return;
    char line[4096], self[PATH_MAX] = "", other[PATH_MAX];
    sysfs_of(major(st->st_rdev), minor(st->st_rdev), self);
    size_t sl = strlen(self);
    while (fgets(line, sizeof line, f)) {
        unsigned maj, mi;
        /* id parent major:minor ... */
        if (sscanf(line, "%*u %*u %u:%u", &maj, &mi) != 2) continue;
        if (maj == major(st->st_rdev) && mi == minor(st->st_rdev))
            die("%s is mounted; refusing to write to it", dev, 0);
        if (sl && sysfs_of(maj, mi, other) == 0 && strncmp(other, self, sl) == 0 && other[sl] == '/')
            die("a partition of %s is mounted; refusing to write to it", dev, 0);
    }
    fclose(f);
}

struct result { int first; uint8_t want, got; long ndiff; };
static int compare(const uint8_t *want, const uint8_t *got, size_t n, struct result *r) {
    r->first = -1; r->ndiff = 0;
    for (size_t i = 0; i < n; i++)
        if (want[i] != got[i]) {
            if (r->first < 0) { r->first = (int)i; r->want = want[i]; r->got = got[i]; }
            r->ndiff++;
        }
    return r->first >= 0;
}

static long counts[NLAYOUT][NKIND], failed[NLAYOUT], okc[NLAYOUT];

int main(int argc, char **argv) {
    const char *target = NULL, *serial = NULL;
    int verify = 0, only = -1;
    char devpath[300];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-V") || !strcmp(argv[i], "--verify")) verify = 1;
        else if (!strcmp(argv[i], "--serial") && i + 1 < argc) serial = argv[++i];
        else if (!strcmp(argv[i], "-l") && i + 1 < argc) {
            i++;
            only = !strcmp(argv[i], "contig") ? 0 : !strcmp(argv[i], "scattered") ? 1 : -2;
            if (only == -2) die("unknown layout %s", argv[i], 0);
        } else if (argv[i][0] == '-' && argv[i][1]) die("unknown option %s", argv[i], 0);
        else if (!target) target = argv[i];
        else die("more than one target: %s", argv[i], 0);
    }
    if (serial && target) die("give a target or --serial, not both", NULL, 0);
    if (serial) { find_serial(serial, devpath, sizeof devpath); target = devpath; }
    if (!target) die("usage: nvme-offset-probe [-V] [-l contig|scattered] (DEVICE-OR-FILE | --serial SERIAL)", NULL, 0);

    struct stat st;
    if (stat(target, &st) != 0) die("cannot stat %s", target, errno);
    int isblk = S_ISBLK(st.st_mode);
    if (!isblk && !S_ISREG(st.st_mode)) die("%s is neither a block device nor a regular file", target, 0);
    if (isblk && !verify) refuse_if_mounted(target, &st);

    const uint64_t need = (uint64_t)NLAYOUT * NCASE * STRIDE;
    int flags = verify ? O_RDONLY : O_RDWR;
    int dfd = open(target, flags | O_DIRECT | O_CLOEXEC);
    if (dfd < 0) die("cannot open %s with O_DIRECT", target, errno);
    int bfd = open(target, flags | O_CLOEXEC);
    if (bfd < 0) die("cannot open %s", target, errno);

    uint64_t bytes = 0;
    int lbs = 512;
    if (isblk) {
        if (ioctl(dfd, BLKGETSIZE64, &bytes) != 0) die("BLKGETSIZE64 on %s", target, errno);
        if (ioctl(dfd, BLKSSZGET, &lbs) != 0) die("BLKSSZGET on %s", target, errno);
        if (lbs != 512) die("%s has a logical block size other than 512: in-page offsets of 512 cannot be tested", target, 0);
    } else {
        bytes = (uint64_t)st.st_size;
        if (bytes < need && !verify) {
            if (ftruncate(bfd, (off_t)need) != 0) die("cannot extend %s", target, errno);
            bytes = need;
        }
    }
    if (bytes < need) die("%s is smaller than the 6 MiB the probe needs", target, 0);

    printf("PROBE version=1 target=%s type=%s lbs=%d bytes=%" PRIu64 " cases=%d base=0 stride=%d mode=%s\n",
           target, isblk ? "blockdev" : "file", lbs, bytes, NLAYOUT * NCASE, STRIDE,
           verify ? "verify" : "write-read");
    fflush(stdout);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint8_t *want = aligned_alloc(PAGE, 4 * PAGE), *ref = aligned_alloc(PAGE, 4 * PAGE);
    if (!want || !ref) die("out of memory", NULL, 0);
    if (isblk && !verify) ioctl(bfd, BLKFLSBUF, 0);

    for (int layout = 0; layout < NLAYOUT; layout++) {
        if (only >= 0 && layout != only) continue;
        uint8_t *wbuf = NULL, *rbuf = NULL;
        if (!verify) {
            int pw, pr;
            wbuf = get_buf(layout, &pw);
            rbuf = get_buf(layout, &pr);
            printf("BUF layout=%s pfns=", layout_name[layout]);
            print_pfns("wbuf", wbuf);
            putchar(',');
            print_pfns("rbuf", rbuf);
            printf(" phys=%s\n", phys_word(layout, pw, pr));
            fflush(stdout);
        }
        for (int c = 0; c < NCASE; c++) {
            int a = (c / NSIZE) * 512, size = (c % NSIZE + 1) * 512, b = read_off(a);
            int gcase = layout * NCASE + c;
            off_t pos = (off_t)gcase * STRIDE;
            int kinds = 0, kind = -1, err = 0;
            struct result res = {-1, 0, 0, 0}, r = {-1, 0, 0, 0};
            fill_pattern(want, size, gcase);
#define MARK(k, rr, e) do { kinds |= 1 << (k); if (kind < 0) { kind = (k); res = (rr); err = (e); } } while (0)
            if (verify) {
                ssize_t n = pread(bfd, ref, size, pos);
                if (n != size) { r.first = -1; r.ndiff = 0; MARK(K_DISKERR, r, n < 0 ? errno : 0); }
                else if (compare(want, ref, size, &r)) MARK(K_DISKMIS, r, 0);
            } else {
                memcpy(wbuf + a, want, size);
                ssize_t n = pwrite(dfd, wbuf + a, size, pos);
                if (n != size) { r.first = -1; r.ndiff = 0; MARK(K_WERR, r, n < 0 ? errno : 0); }
                /* reference: the page cache, dropped first, so the bytes come from the disk */
                int refok = 0;
                posix_fadvise(bfd, pos, STRIDE, POSIX_FADV_DONTNEED);
                memset(ref, 0x5a, size);
                n = pread(bfd, ref, size, pos);
                if (n != size) { r.first = -1; r.ndiff = 0; MARK(K_REFERR, r, n < 0 ? errno : 0); }
                else {
                    refok = 1;
                    if (!(kinds & (1 << K_WERR)) && compare(want, ref, size, &r)) MARK(K_WCORRUPT, r, 0);
                }
                memset(rbuf, 0xa5, BUFPAGES * PAGE);
                n = pread(dfd, rbuf + b, size, pos);
                if (n != size) { r.first = -1; r.ndiff = 0; MARK(K_RERR, r, n < 0 ? errno : 0); }
                else if (compare(refok ? ref : want, rbuf + b, size, &r)) MARK(K_RCORRUPT, r, 0);
            }
            if (kinds) {
                failed[layout]++;
                for (int k = 0; k < NKIND; k++)
                    if (kinds & (1 << k)) counts[layout][k]++;
                printf("FAIL layout=%s woff=%d roff=%d size=%d case=%d kind=%s kinds=", layout_name[layout],
                       a, verify ? 0 : b, size, gcase, kind_name[kind]);
                for (int k = 0, sep = 0; k < NKIND; k++)
                    if (kinds & (1 << k)) printf("%s%s", sep++ ? "," : "", kind_name[k]);
                if (res.first >= 0)
                    printf(" first=%d want=0x%02x got=0x%02x ndiff=%ld", res.first, res.want, res.got, res.ndiff);
                else
                    printf(" first=-1 errno=%s", err ? strerrorname_np(err) ? strerrorname_np(err) : "?" : "short");
                putchar('\n');
            } else okc[layout]++;
        }
        printf("SUMMARY layout=%s cases=%d ok=%ld failed=%ld", layout_name[layout], NCASE, okc[layout], failed[layout]);
        for (int k = 0; k < NKIND; k++)
            if ((k < K_DISKMIS) != verify) printf(" %s=%ld", kind_name[k], counts[layout][k]);
        putchar('\n');
        fflush(stdout);
    }
    if (!verify) fsync(dfd);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long tf = 0, tok = 0, tcases = 0;
    for (int l = 0; l < NLAYOUT; l++) {
        if (only >= 0 && l != only) continue;
        tf += failed[l]; tok += okc[l]; tcases += NCASE;
    }
    printf("TOTAL cases=%ld ok=%ld failed=%ld", tcases, tok, tf);
    for (int k = 0; k < NKIND; k++)
        if ((k < K_DISKMIS) != verify) printf(" %s=%ld", kind_name[k], counts[0][k] + counts[1][k]);
    printf(" elapsed_ms=%ld\n", (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));
    fflush(stdout);
    return tf ? 1 : 0;
}

/*
 * The front of the one-file if-inject executable (built by tools/build_exe.py).
 *
 * The file is this static program, then a zlib stream holding a PyInstaller
 * one-folder build, then a trailer (struct trailer). A one-folder build starts
 * about as fast as plain Python; PyInstaller's own one-file mode unpacks itself
 * on every start and is 4x slower. So this program unpacks the folder once,
 * into a cache entry named by the payload's SHA-256, and from then on only
 * checks that the entry is there and execs the program in it, argv and
 * environment unchanged.
 *
 * Any libc, or none: the folder carries the build machine's dynamic loader
 * and every library it loads (tools/build_exe.py, self_contained). Its
 * program was built with placeholder slots for its interpreter (PT_INTERP)
 * and library path (DT_RPATH); the unpack fills them with absolute paths to
 * the entry's own loader and library dir (as staticx does), so the kernel
 * starts the program with the bundled loader, which loads nothing from the
 * node. Nothing is added to the environment, /proc/self/exe is the program,
 * and the CNI plugins it runs get the node's libraries. An entry whose slots
 * name another path (the cache dir moved) is unpacked anew.
 *
 * if-inject runs as root, so the cache must be a place only root can change:
 * every directory from / down to the cache dir is checked to be owned by root
 * (or the invoking user, for a non-root run) and not group/world writable (a
 * root-owned sticky dir such as /tmp may be passed through: nobody else can
 * rename or remove what root created in it). The cache dir itself must be
 * ours and is made 0700. Anything else is refused, never repaired; an entry
 * that is not as we leave it (inside that checked dir) is unpacked anew.
 *
 * Two first runs at once: each unpacks into its own temporary dir in the
 * cache dir and renames it to the entry's name; rename() is atomic and fails
 * when the entry already exists, so the loser removes its copy and uses the
 * winner's. An entry is complete whenever it exists. A damaged executable is
 * found by zlib's checksum before its entry exists.
 *
 * Old builds: every run holds a shared flock on its entry for as long as it
 * runs; unpacking a new build removes the entries nobody holds (see prune).
 *
 * Cache dir: $IF_INJECT_EXE_CACHE if set, else /var/cache/if-inject for root,
 * else $XDG_CACHE_HOME/if-inject or $HOME/.cache/if-inject.
 *
 * Errors: one JSON line on stderr with an "error" field, exit 1, as the tool.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define MAGIC "IF-INJECT-EXE-2"
#define KEY_LEN 64
#define PROGRAM "if-inject"
#define LIBDIR "_internal"
#define LOADER LIBDIR "/ld-linux-x86-64.so.2" /* build_exe.py LOADER_NAME */
#define SLOT 1024                              /* build_exe.py SLOT */

/* At the very end of the file; build_exe.py writes the same layout. */
struct trailer {
    uint64_t payload_offset; /* little endian, as everything here */
    uint64_t payload_size;
    uint64_t interp_offset; /* of the PT_INTERP slot in the unpacked PROGRAM */
    uint64_t rpath_offset;  /* of its DT_RPATH slot */
    char cache_key[KEY_LEN]; /* hex SHA-256 of the payload: the entry's name */
    char build_key[KEY_LEN]; /* for build_exe.py's up-to-date check */
    char version[64];
    char magic[16];
};

/* ---- errors ---------------------------------------------------------- */

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* An unpack under way, removed if we fail (see extract). */
static int unpack_parent = -1;
static char unpack_name[64];
static void remove_tree(int parent, const char *name);

/* The tool's log format: level, time (ISO 8601, ms, local offset), msg, error. */
static void __attribute__((noreturn, format(printf, 1, 2))) fail(const char *fmt, ...) {
    char why[PATH_MAX + 256], stamp[64], zone[8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    strftime(zone, sizeof zone, "%z", &tm); /* +hhmm; the tool writes +hh:mm */
    fprintf(stderr, "{\"level\": \"error\", \"time\": \"%s.%03ld%.3s:%s\", "
            "\"msg\": \"Executable failed to start\", \"error\": ",
            stamp, (long)(tv.tv_usec / 1000), zone, zone + 3);
    json_string(stderr, why);
    fputs("}\n", stderr);
    if (unpack_parent >= 0)
        remove_tree(unpack_parent, unpack_name);
    exit(1);
}

/* ---- the executable's own trailer ------------------------------------- */

static int no_proc; /* a bare chroot: found by argv[0] */

static int open_self(const char *argv0) {
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0 && strchr(argv0, '/')) {
        no_proc = 1;
        fd = open(argv0, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0)
        fail("cannot open the executable itself (/proc/self/exe): %s", strerror(errno));
    return fd;
}

static void read_trailer(int self, struct trailer *t) {
    struct stat st;
    if (fstat(self, &st) != 0 || st.st_size < (off_t)sizeof *t
        || pread(self, t, sizeof *t, st.st_size - (off_t)sizeof *t) != (ssize_t)sizeof *t
        || memcmp(t->magic, MAGIC, sizeof MAGIC) != 0)
        fail("this file has no if-inject payload (truncated or not built by build_exe.py)");
    for (int i = 0; i < KEY_LEN; i++)
        if (!strchr("0123456789abcdef", t->cache_key[i]) || !t->cache_key[i])
            fail("corrupt trailer: bad cache key");
    if (t->payload_offset + t->payload_size + sizeof *t != (uint64_t)st.st_size)
        fail("corrupt trailer: payload does not fit the file (truncated copy?)");
}

/* ---- the cache dir and its safety ------------------------------------- */

static uid_t me;

static int trusted_owner(uid_t uid) { return uid == 0 || uid == me; }

/* A directory that nobody but root (or we) can change. `passable` allows a
 * root-owned sticky dir (e.g. /tmp) on the way down, never as the cache dir. */
static const char *unsafe_dir(const struct stat *st, int passable) {
    if (!S_ISDIR(st->st_mode))
        return "not a directory";
    if (!trusted_owner(st->st_uid))
        return "owned by another user";
    if (st->st_mode & (S_IWGRP | S_IWOTH)) {
        if (passable && st->st_uid == 0 && (st->st_mode & S_ISVTX))
            return NULL;
        return "writable by group or others";
    }
    return NULL;
}

static void cache_dir_path(char *out, size_t size) {
    const char *env = getenv("IF_INJECT_EXE_CACHE");
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (env && *env)
        n = snprintf(out, size, "%s", env);
    else if (me == 0)
        n = snprintf(out, size, "/var/cache/if-inject");
    else if (xdg && xdg[0] == '/')
        n = snprintf(out, size, "%s/if-inject", xdg);
    else if (home && home[0] == '/')
        n = snprintf(out, size, "%s/.cache/if-inject", home);
    else
        fail("no cache dir for a non-root user: set IF_INJECT_EXE_CACHE or HOME");
    if (n < 0 || (size_t)n >= size)
        fail("cache dir path too long");
    if (out[0] != '/')
        fail("IF_INJECT_EXE_CACHE must be an absolute path: %s", out);
}

/* Resolve symlinks in the part of `path` that exists; the walk below then
 * checks the real directories, whatever any link pointed to. */
static void resolve_existing(const char *path, char *out) {
    char head[PATH_MAX], tail[PATH_MAX] = "";
    snprintf(head, sizeof head, "%s", path);
    for (;;) {
        if (realpath(head, out)) {
            size_t n = strlen(out);
            if (snprintf(out + n, PATH_MAX - n, "%s%s", strcmp(out, "/") && *tail ? "/" : "",
                         tail) >= (int)(PATH_MAX - n))
                fail("cache dir path too long");
            return;
        }
        if (errno != ENOENT)
            fail("cache dir %s: %s", head, strerror(errno));
        char *slash = strrchr(head, '/');
        char rest[PATH_MAX];
        snprintf(rest, sizeof rest, "%s%s%s", slash + 1, *tail ? "/" : "", tail);
        snprintf(tail, sizeof tail, "%s", rest);
        if (slash == head) {
            head[1] = 0;
        } else {
            *slash = 0;
        }
    }
}

/* Open the cache dir, creating what is missing, and check every directory
 * from / down. Returns an fd of the cache dir; `real` gets its resolved path. */
static int open_cache_dir(const char *path, char *real) {
    resolve_existing(path, real);
    int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    const char *why;
    if (fd < 0 || fstat(fd, &st) != 0)
        fail("cannot open /: %s", strerror(errno));
    char walk[PATH_MAX], seen[PATH_MAX] = "";
    snprintf(walk, sizeof walk, "%s", real);
    for (char *save = NULL, *name = strtok_r(walk, "/", &save); name;
         name = strtok_r(NULL, "/", &save)) {
        if ((why = unsafe_dir(&st, 1)))
            fail("unsafe cache dir %s: %s is %s", real, *seen ? seen : "/", why);
        int last = save == NULL || *save == 0;
        strncat(seen, "/", sizeof seen - strlen(seen) - 1);
        strncat(seen, name, sizeof seen - strlen(seen) - 1);
        if (strcmp(name, "..") == 0 || strcmp(name, ".") == 0)
            fail("cache dir %s: no . or .. please", real);
        int next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT) {
            if (mkdirat(fd, name, last ? 0700 : 0755) != 0 && errno != EEXIST)
                fail("cannot create cache dir %s: %s (set IF_INJECT_EXE_CACHE to a root-only dir)",
                     seen, strerror(errno));
            next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (next < 0 || fstat(next, &st) != 0)
            fail("cache dir %s: %s", seen, strerror(errno));
        close(fd);
        fd = next;
    }
    if ((why = unsafe_dir(&st, 0)))
        fail("unsafe cache dir %s: %s", real, why);
    if (st.st_uid != me)
        fail("unsafe cache dir %s: owned by uid %u, not by the user running if-inject (%u)",
             real, (unsigned)st.st_uid, (unsigned)me);
    if ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) != 0) /* only readable by others */
        fail("cache dir %s: chmod 0700: %s", real, strerror(errno));
    return fd;
}

/* ---- removing trees (our own unpack dirs, in the checked cache dir) --- */

static void remove_tree(int parent, const char *name) {
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        unlinkat(parent, name, 0);
        return;
    }
    DIR *dir = fdopendir(fd);
    if (!dir) {
        close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (e->d_type == DT_DIR)
            remove_tree(fd, e->d_name);
        else if (unlinkat(fd, e->d_name, 0) != 0 && errno == EISDIR)
            remove_tree(fd, e->d_name);
    }
    closedir(dir);
    unlinkat(parent, name, AT_REMOVEDIR);
}

/* Every run holds a shared flock on its entry while it runs (the fd stays
 * open across exec), and an unpack holds one on its temporary dir. What can
 * be locked exclusively is in nobody's use: other builds' entries and the
 * leftovers of crashed unpacks. Removed when a new build is unpacked, so the
 * cache holds the builds in use and the newest. */
static void prune(int cache, const char *keep) {
    int fd = dup(cache);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir)
        return;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, keep))
            continue;
        struct stat st;
        if (!strncmp(e->d_name, ".unpack-", 8) /* an unpack under way, or crashed */
            && (fstatat(cache, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0
                || time(NULL) - st.st_mtime < 60))
            continue; /* maybe just made, not yet locked by its unpacker */
        int victim = openat(cache, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (victim < 0)
            continue;
        char aside[64];
        snprintf(aside, sizeof aside, ".remove-%d", (int)getpid());
        if (flock(victim, LOCK_EX | LOCK_NB) == 0 && renameat(cache, e->d_name, cache, aside) == 0)
            remove_tree(cache, aside);
        close(victim);
    }
    closedir(dir);
}

/* ---- unpacking ---------------------------------------------------------- */

/* The payload: a zlib stream of records, each
 *   u8 kind ('d' dir, 'f' file, 'e' end), u32 mode, u16 path length,
 *   u64 size, the path (relative, '/'-separated), then `size` bytes of data. */
struct inflater {
    int self;
    uint64_t offset, left;
    z_stream z;
    unsigned char in[1 << 16];
};

/* More compressed input, when zlib has used up what it had. */
static void zfill(struct inflater *f) {
    if (f->z.avail_in || !f->left)
        return;
    size_t want = f->left < sizeof f->in ? (size_t)f->left : sizeof f->in;
    ssize_t got = pread(f->self, f->in, want, (off_t)f->offset);
    if (got <= 0)
        fail("reading the payload: %s", got < 0 ? strerror(errno) : "short file");
    f->offset += (uint64_t)got;
    f->left -= (uint64_t)got;
    f->z.next_in = f->in;
    f->z.avail_in = (uInt)got;
}

/* Exactly n bytes of the unpacked stream. */
static void zread(struct inflater *f, void *buf, size_t n) {
    f->z.next_out = buf;
    f->z.avail_out = (uInt)n;
    while (f->z.avail_out) {
        zfill(f);
        int rc = inflate(&f->z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END && f->z.avail_out)
            fail("payload ends early: the executable is corrupt");
        if (rc != Z_OK && rc != Z_STREAM_END)
            fail("payload is corrupt (zlib: %s): copy the executable again",
                 f->z.msg ? f->z.msg : zError(rc));
    }
}

/* Inflate to the stream's end, where zlib checks the Adler-32 of all the data. */
static void zfinish(struct inflater *f) {
    unsigned char extra;
    int rc;
    do {
        zfill(f);
        f->z.next_out = &extra;
        f->z.avail_out = 1;
        rc = inflate(&f->z, Z_NO_FLUSH);
        if ((rc != Z_OK && rc != Z_STREAM_END) || f->z.avail_out == 0)
            fail("payload is corrupt (checksum): copy the executable again");
    } while (rc != Z_STREAM_END);
}

static uint64_t le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void check_member(const char *path) {
    if (!*path || path[0] == '/')
        fail("payload has a bad path: %s", path);
    for (const char *p = path; p; p = strchr(p, '/') ? strchr(p, '/') + 1 : NULL)
        if (!strncmp(p, "../", 3) || !strcmp(p, "..") || *p == '/' || *p == 0)
            fail("payload has a bad path: %s", path);
}

static void unpack_file(struct inflater *f, int dir, const char *path, unsigned mode,
                        uint64_t size) {
    int fd = openat(dir, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        fail("unpacking %s: %s", path, strerror(errno));
    static unsigned char buf[1 << 16];
    while (size) {
        size_t n = size < sizeof buf ? (size_t)size : sizeof buf;
        zread(f, buf, n);
        for (size_t done = 0; done < n;) {
            ssize_t w = write(fd, buf + done, n - done);
            if (w < 0)
                fail("unpacking %s: %s", path, strerror(errno));
            done += (size_t)w;
        }
        size -= n;
    }
    if (fchmod(fd, mode & 0755) != 0 || close(fd) != 0)
        fail("unpacking %s: %s", path, strerror(errno));
}

static void unpack(int self, const struct trailer *t, int dir) {
    struct inflater *f = calloc(1, sizeof *f);
    if (!f || inflateInit(&f->z) != Z_OK)
        fail("out of memory");
    f->self = self;
    f->offset = t->payload_offset;
    f->left = t->payload_size;
    for (;;) {
        unsigned char head[15];
        char path[PATH_MAX];
        zread(f, head, sizeof head);
        unsigned kind = head[0], mode = (unsigned)le(head + 1, 4);
        size_t len = (size_t)le(head + 5, 2);
        uint64_t size = le(head + 7, 8);
        if (kind == 'e')
            break;
        if (len == 0 || len >= sizeof path)
            fail("payload is corrupt: bad record");
        zread(f, path, len);
        path[len] = 0;
        check_member(path);
        if (kind == 'd') {
            if (mkdirat(dir, path, 0700) != 0 || fchmodat(dir, path, mode & 0755, 0) != 0)
                fail("unpacking %s: %s", path, strerror(errno));
        } else if (kind == 'f') {
            unpack_file(f, dir, path, mode, size);
        } else {
            fail("payload is corrupt: record kind %u", kind);
        }
    }
    zfinish(f);
    inflateEnd(&f->z);
    free(f);
}

/* ---- the program's interpreter and library path ---------------------- */

/* What the slots must hold for the entry `key` in the cache dir `real`. */
struct slots {
    char interp[SLOT], rpath[SLOT];
};

static void slot_paths(const char *real, const char *key, struct slots *want) {
    memset(want, 0, sizeof *want);
    int n = snprintf(want->interp, SLOT, "%s/%s/" LOADER, real, key);
    if (n < 0 || n >= SLOT)
        fail("cache dir path too long: %s (at most %d characters)", real,
             SLOT - 1 - (n - (int)strlen(real)));
    snprintf(want->rpath, SLOT, "%s/%s/" LIBDIR, real, key);
}

/* Whether the unpacked program's slot at `offset` holds `want` (NUL-padded). */
static int slot_is(int program, uint64_t offset, const char *want) {
    char got[SLOT];
    return pread(program, got, SLOT, (off_t)offset) == SLOT && memcmp(got, want, SLOT) == 0;
}

/* Fill the slots of a freshly unpacked program, after checking they are the
 * build's placeholders (a damaged trailer must not make us write elsewhere). */
static void fill_slots(int dir, const struct trailer *t, const struct slots *want) {
    int fd = openat(dir, PROGRAM, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    char got[2];
    if (fd < 0)
        fail("payload is corrupt: no %s in it", PROGRAM);
    if (pread(fd, got, 2, (off_t)t->interp_offset) != 2 || memcmp(got, "/I", 2)
        || pread(fd, got, 2, (off_t)t->rpath_offset) != 2 || memcmp(got, "/R", 2))
        fail("payload is corrupt: %s has no interpreter slots", PROGRAM);
    if (pwrite(fd, want->interp, SLOT, (off_t)t->interp_offset) != SLOT
        || pwrite(fd, want->rpath, SLOT, (off_t)t->rpath_offset) != SLOT || close(fd) != 0)
        fail("unpacking %s: %s", PROGRAM, strerror(errno));
}

/* A file of the entry as we leave it: ours, executable, not writable by others. */
static int entry_file_ok(int entry, const char *path) {
    struct stat st;
    return fstatat(entry, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)
        && trusted_owner(st.st_uid) && (st.st_mode & S_IXUSR) && !(st.st_mode & (S_IWGRP | S_IWOTH));
}

/* The entry, opened and share-locked (see prune), if it is there and as we
 * leave it: a directory only root (or we) can change, with the program and
 * the loader in it, the program's slots naming this entry. Returns -1 if
 * there is none. The fd is not close-on-exec: it holds the lock for as long
 * as the program runs. */
static int open_entry(int cache, const char *key, const struct trailer *t, const struct slots *want) {
    struct stat st, now;
    int fd = openat(cache, key, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_SH) != 0 || fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    if (fstatat(cache, key, &now, AT_SYMLINK_NOFOLLOW) != 0 || now.st_ino != st.st_ino) {
        close(fd); /* pruned while we waited for the lock */
        return -1;
    }
    int program = openat(fd, PROGRAM, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    int intact = unsafe_dir(&st, 0) == NULL && program >= 0 && entry_file_ok(fd, PROGRAM)
        && entry_file_ok(fd, LOADER);
    int ours = intact && slot_is(program, t->interp_offset, want->interp)
        && slot_is(program, t->rpath_offset, want->rpath);
    if (program >= 0)
        close(program);
    if (ours)
        return fd;
    /* Intact but unpacked under another path: the same dir seen elsewhere (a
     * bind mount). Never pull it from under a run that uses it. */
    if (intact && flock(fd, LOCK_EX | LOCK_NB) != 0)
        fail("cache entry %s is in use by a run that sees the cache dir at another path: "
             "set IF_INJECT_EXE_CACHE to a dir of its own", key);
    /* Not as we leave it: set it aside, to be pruned, and unpack anew. */
    char aside[64];
    snprintf(aside, sizeof aside, ".remove-broken-%d", (int)getpid());
    if (renameat(cache, key, cache, aside) != 0 && errno != ENOENT) /* ENOENT: another run did */
        fail("cannot set aside broken cache entry %s: %s", key, strerror(errno));
    close(fd);
    return -1;
}

/* Unpack into a temporary dir, then rename it to `key`: the entry never
 * exists half-written. Of two runs doing this at once, the second rename
 * fails and that run removes its copy and uses the other's. Returns the
 * unpacked dir, share-locked. */
static int extract(int self, const struct trailer *t, int cache, const char *key,
                   const struct slots *want) {
    char tmp[64];
    snprintf(tmp, sizeof tmp, ".unpack-%.16s-%d", key, (int)getpid());
    remove_tree(cache, tmp); /* a crashed run of ours with the same pid */
    if (mkdirat(cache, tmp, 0700) != 0)
        fail("cannot create %s in the cache dir: %s", tmp, strerror(errno));
    unpack_parent = cache;
    snprintf(unpack_name, sizeof unpack_name, "%s", tmp);
    int dir = openat(cache, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir < 0 || flock(dir, LOCK_SH) != 0)
        fail("cannot open %s: %s", tmp, strerror(errno));
    unpack(self, t, dir);
    fill_slots(dir, t, want);
    if (syncfs(dir) != 0 || fchmod(dir, 0700) != 0)
        fail("cannot sync %s: %s", tmp, strerror(errno));
    if (renameat(cache, tmp, cache, key) != 0) {
        if (errno != EEXIST && errno != ENOTEMPTY)
            fail("cannot rename %s to %s: %s", tmp, key, strerror(errno));
        remove_tree(cache, tmp); /* another run was first */
    }
    unpack_parent = -1;
    prune(cache, key);
    return dir; /* still locked: keeps the entry from being pruned until we hold it */
}

int main(int argc, char **argv) {
    me = geteuid();
    int self = open_self(argv[0]);
    struct trailer t;
    read_trailer(self, &t);
    char key[KEY_LEN + 1], path[PATH_MAX], real[PATH_MAX], exe[PATH_MAX];
    memcpy(key, t.cache_key, KEY_LEN);
    key[KEY_LEN] = 0;
    cache_dir_path(path, sizeof path);
    int cache = open_cache_dir(path, real);
    static struct slots want;
    slot_paths(real, key, &want);
    int entry = open_entry(cache, key, &t, &want);
    for (int tries = 0; entry < 0 && tries < 3; tries++) {
        int unpacked = extract(self, &t, cache, key, &want);
        entry = open_entry(cache, key, &t, &want);
        close(unpacked);
    }
    if (entry < 0)
        fail("cache entry %s/%s keeps disappearing", real, key);
    /* -version alone is answered from the trailer (the version stamped into the
     * bundled if_inject.py): no need to start Python for it. Only now, so that
     * a first run unpacks as any other command would. */
    if (argc == 2 && (strcmp(argv[1], "-version") == 0 || strcmp(argv[1], "--version") == 0)) {
        if (printf("%.*s\n", (int)sizeof t.version, t.version) < 0 || fflush(stdout) != 0)
            fail("cannot write the version: %s", strerror(errno));
        return 0;
    }
    if (snprintf(exe, sizeof exe, "%s/%s/" PROGRAM, real, key) >= (int)sizeof exe)
        fail("cache dir path too long");
    close(cache);
    close(self);
    if (no_proc) /* the bootloader, too, then finds itself by argv[0] */
        argv[0] = exe;
    execv(exe, argv);
    fail("cannot run %s: %s%s", exe, strerror(errno),
         errno == EACCES ? " (a noexec mount? set IF_INJECT_EXE_CACHE to a dir on another)" : "");
}

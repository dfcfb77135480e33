/*
 * The front of the one-file if-inject executable (built by tools/build_exe.py).
 *
 * The file is this static program, then a zlib stream holding a PyInstaller
 * one-folder build, then the payload's list (its records without their data),
 * then a trailer (struct trailer). A one-folder build starts about as fast as
 * plain Python; PyInstaller's own one-file mode unpacks itself on every start
 * and is 4x slower. So this program unpacks the folder once, into a cache
 * entry named by the SHA-256 of payload and list, and from then on checks the
 * entry against the list and execs the program in it, argv and environment
 * unchanged.
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
 * The node is shared, and the cache dir may be one that others use too
 * (IF_INJECT_EXE_CACHE=/opt): docs/executable-cache.md has the rules for
 * users. In short:
 * - The named dir is walked as given, one component at a time from /, with
 *   O_NOFOLLOW: every directory must be owned by root (or the invoking user,
 *   for a non-root run) and not group/world writable (a root-owned sticky dir
 *   such as /tmp may be passed through: nobody else can rename or remove what
 *   root created in it). A symlink on the way is followed only if it is owned
 *   by root (or us) and sits in a directory nobody else can write. Missing
 *   directories are created.
 * - In the named dir, the launcher makes a directory of its own (OWN_DIR,
 *   mode 0700, with its MARKER file in it) and works only in there. An
 *   existing OWN_DIR with another owner or mode, or without the marker, is
 *   refused, never repaired: nothing is ever chmodded.
 * - It deletes only in OWN_DIR, only its own names (entries, temporary
 *   unpacks, set-aside entries: our_name), never follows a symlink, and never
 *   crosses a mount point (same_mount).
 * - An entry is reused only if every directory and file of the list is there
 *   with its type, size, mode and owner, and the program's slots name this
 *   entry; otherwise it is set aside and unpacked anew. The program is run by
 *   its fd, the one that was checked (fexecve), not by its path.
 *
 * Two first runs at once: each unpacks into its own temporary dir in OWN_DIR
 * and renames it to the entry's name; rename() is atomic and fails when the
 * entry already exists, so the loser removes its copy and uses the winner's.
 * An entry is complete whenever it exists. A damaged executable is found by
 * zlib's checksum, and by the list, before its entry exists.
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
#include <signal.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define MAGIC "IF-INJECT-EXE-3"
#define KEY_LEN 64
#define PROGRAM "if-inject"
#define LIBDIR "_internal"
#define LOADER LIBDIR "/ld-linux-x86-64.so.2" /* build_exe.py LOADER_NAME */
#define SLOT 1024                              /* build_exe.py SLOT */
#define OWN_DIR "if-inject-exe"                /* ours, in the named cache dir */
#define MARKER ".if-inject-exe"                /* in OWN_DIR: proof that we made it */
#define MARKER_TEXT "if-inject executable cache: made by if-inject, which deletes only what it made here\n"
#define HEAD 15                                /* a record's head: kind, mode, path length, size */

extern char **environ;

/* At the very end of the file; build_exe.py writes the same layout. */
struct trailer {
    uint64_t payload_offset; /* little endian, as everything here */
    uint64_t payload_size;
    uint64_t list_offset; /* the payload's records without data, then 'e' */
    uint64_t list_size;
    uint64_t interp_offset; /* of the PT_INTERP slot in the unpacked PROGRAM */
    uint64_t rpath_offset;  /* of its DT_RPATH slot */
    char cache_key[KEY_LEN]; /* hex SHA-256 of payload and list: the entry's name */
    char build_key[KEY_LEN]; /* for build_exe.py's up-to-date check */
    char version[64];
    char magic[16];
};

/* ---- errors ---------------------------------------------------------- */

/* The length of the UTF-8 sequence at s, or 0 if it is not one (as Python
 * decodes: no overlong form, no surrogate, nothing above U+10FFFF). */
static int utf8_length(const unsigned char *s) {
    int n = s[0] < 0x80 ? 1 : s[0] >= 0xc2 && s[0] <= 0xdf ? 2 : (s[0] & 0xf0) == 0xe0 ? 3
        : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : 0;
    unsigned low = s[0] == 0xe0 ? 0xa0 : s[0] == 0xf0 ? 0x90 : 0x80; /* the second byte's range */
    unsigned high = s[0] == 0xed ? 0x9f : s[0] == 0xf4 ? 0x8f : 0xbf;
    if (n > 1 && (s[1] < low || s[1] > high))
        return 0;
    for (int i = 2; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* `s` as a JSON string at `out` (room for 6 bytes per byte of s, and 3):
 * a byte that is not UTF-8 (a path's) as Python's surrogateescape shows it. */
static char *json_string(char *out, const char *s) {
    *out++ = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c;) {
        int n = utf8_length(c);
        if (*c == '"' || *c == '\\')
            out += sprintf(out, "\\%c", *c++);
        else if (*c < 0x20 || n == 0)
            out += sprintf(out, "\\u%04x", *c < 0x20 ? *c : 0xdc00 | *c), c++;
        else
            for (; n > 0; n--)
                *out++ = (char)*c++;
    }
    *out++ = '"';
    *out = 0;
    return out;
}

/* Where a directory is: its device and mount (statx's mount id, where the
 * kernel has it: a bind mount of the same filesystem has the same device). */
struct where {
    dev_t dev;
    uint64_t mnt;
    int has_mnt;
};

/* An unpack under way, removed if we fail (see extract). */
static int unpack_parent = -1;
static char unpack_name[64];
static struct where own_where;
static void remove_tree(int parent, const char *name, const struct where *top);

/* The tool's log format: level, time (ISO 8601, ms, local offset), msg,
 * error. What was half made goes first (a stderr that cannot be written must
 * not leave it), then the line, in one write (two runs failing on one pipe
 * do not mix lines up to PIPE_BUF, 4 KB: all but those of very long paths). */
static void __attribute__((noreturn, format(printf, 1, 2))) fail(const char *fmt, ...) {
    static char why[2 * PATH_MAX + 256], line[6 * sizeof why + 256];
    char stamp[64], zone[8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (unpack_parent >= 0)
        remove_tree(unpack_parent, unpack_name, &own_where);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    strftime(zone, sizeof zone, "%z", &tm); /* +hhmm; the tool writes +hh:mm */
    char *end = line + sprintf(line, "{\"level\": \"error\", \"time\": \"%s.%03ld%.3s:%s\", "
                               "\"msg\": \"Executable failed to start\", \"error\": ",
                               stamp, (long)(tv.tv_usec / 1000), zone, zone + 3);
    end = json_string(end, why);
    end += sprintf(end, "}\n");
    for (char *at = line; at < end;) {
        ssize_t wrote = write(STDERR_FILENO, at, (size_t)(end - at));
        if (wrote <= 0 && errno != EINTR)
            break;
        at += wrote > 0 ? wrote : 0;
    }
    exit(1);
}

/* The signal mask from before hold_signals (see main), while they are held. */
static sigset_t mask_before;
static int holding;

/* flock that may wait (for a run that prunes): signals are let through while
 * it waits, so that a run stopped with the lock cannot make us deaf to them;
 * nothing is half made at the points that wait. */
static int flock_wait(int fd, int op) {
    sigset_t held;
    if (holding)
        sigprocmask(SIG_SETMASK, &mask_before, &held);
    int rc = flock(fd, op);
    int e = errno;
    if (holding)
        sigprocmask(SIG_SETMASK, &held, NULL);
    errno = e;
    return rc;
}

/* A name of ours that no other run picks: a run in another PID namespace
 * sharing the cache dir may have our PID. */
static void unique_name(char *out, size_t size, const char *prefix) {
    uint32_t r;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r = (uint32_t)ts.tv_nsec;
    }
    snprintf(out, size, "%s%d%010u", prefix, (int)getpid(), (unsigned)r);
}

/* ---- the executable's own trailer and list ---------------------------- */

#ifdef MEASURE_REUSE
static int open_self(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fail("cannot open %s: %s", path, strerror(errno));
    return fd;
}
#else
static int no_proc; /* a bare chroot: found by argv[0] */

static int open_self(const char *argv0) {
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0 && strchr(argv0, '/')) {
        no_proc = 1;
        fd = open(argv0, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0 && !strchr(argv0, '/'))
        fail("cannot open the executable itself (/proc/self/exe): %s; without /proc, run it "
             "by a path with a / in it", strerror(errno));
    if (fd < 0)
        fail("cannot open the executable itself (/proc/self/exe): %s", strerror(errno));
    return fd;
}
#endif

static void read_trailer(int self, struct trailer *t) {
    struct stat st;
    if (fstat(self, &st) != 0 || st.st_size < (off_t)sizeof *t
        || pread(self, t, sizeof *t, st.st_size - (off_t)sizeof *t) != (ssize_t)sizeof *t
        || memcmp(t->magic, MAGIC, sizeof MAGIC) != 0)
        fail("this file has no if-inject payload (truncated or not built by build_exe.py)");
    for (int i = 0; i < KEY_LEN; i++)
        if (!strchr("0123456789abcdef", t->cache_key[i]) || !t->cache_key[i])
            fail("corrupt trailer: bad cache key");
    if (t->payload_offset + t->payload_size != t->list_offset
        || t->list_offset + t->list_size + sizeof *t != (uint64_t)st.st_size)
        fail("corrupt trailer: payload does not fit the file (truncated copy?)");
    if (t->list_size < HEAD || t->list_size > (64 << 20))
        fail("corrupt trailer: bad list size");
}

/* The payload's list, as build_exe.py wrote it: records (see unpack) without
 * their data, ending with an 'e' record. */
struct list {
    unsigned char *data;
    size_t size;
};

static void read_list(int self, const struct trailer *t, struct list *l) {
    l->size = (size_t)t->list_size;
    l->data = malloc(l->size);
    if (!l->data)
        fail("out of memory");
    if (pread(self, l->data, l->size, (off_t)t->list_offset) != (ssize_t)l->size)
        fail("reading the payload's list: %s", strerror(errno));
}

static uint64_t le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* The record at *pos of the list: its kind (0 when the list is corrupt),
 * mode, size and NUL-terminated path; *pos moves past it. */
static unsigned list_next(const struct list *l, size_t *pos, unsigned *mode, uint64_t *size,
                          char path[PATH_MAX]) {
    if (*pos + HEAD > l->size)
        return 0;
    const unsigned char *head = l->data + *pos;
    size_t len = (size_t)le(head + 5, 2);
    if (head[0] == 'e')
        return *pos + HEAD == l->size ? (*pos += HEAD, 'e') : 0;
    if (len == 0 || len >= PATH_MAX || *pos + HEAD + len > l->size)
        return 0;
    *mode = (unsigned)le(head + 1, 4);
    *size = le(head + 7, 8);
    memcpy(path, head + HEAD, len);
    path[len] = 0;
    *pos += HEAD + len;
    return head[0];
}

/* ---- where things are ------------------------------------------------ */

static uid_t me;

static int trusted_owner(uid_t uid) { return uid == 0 || uid == me; }

static int where_at(int dir, const char *name, struct where *w, struct statx *sx) {
    struct statx own;
    if (!sx)
        sx = &own;
    int flags = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | (*name ? 0 : AT_EMPTY_PATH);
    if (statx(dir, name, flags, STATX_BASIC_STATS | STATX_MNT_ID, sx) != 0)
        return -1;
    w->dev = makedev(sx->stx_dev_major, sx->stx_dev_minor);
    w->mnt = sx->stx_mnt_id;
    w->has_mnt = (sx->stx_mask & STATX_MNT_ID) != 0;
    return 0;
}

/* On the same mount: no mount point between them. */
static int same_mount(const struct where *a, const struct where *b) {
    return a->dev == b->dev && (!a->has_mnt || !b->has_mnt || a->mnt == b->mnt);
}

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

/* ---- the named cache dir, walked as given ---------------------------- */

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

#define MAX_DEPTH 256
#define MAX_LINKS 40

/* The directories from / to where the walk is: O_PATH fds, their stat, and
 * the length of `path` (the physical path, with no symlink in it) at each. */
static struct walk {
    int fd[MAX_DEPTH];
    struct stat st[MAX_DEPTH];
    size_t len[MAX_DEPTH];
    int depth;
    int links; /* followed so far */
    char path[PATH_MAX];
} w;

static const char *walk_here(void) { return w.depth ? w.path : "/"; }

static void walk_up(int to) {
    while (w.depth > to)
        close(w.fd[w.depth--]);
    w.path[w.len[w.depth]] = 0;
}

static void walk_down(int fd, const struct stat *st, const char *name, const char *given) {
    size_t n = w.len[w.depth];
    if (w.depth + 1 >= MAX_DEPTH || n + 1 + strlen(name) >= sizeof w.path)
        fail("cache dir %s: path too long", given);
    w.path[n] = '/';
    strcpy(w.path + n + 1, name);
    w.depth++;
    w.fd[w.depth] = fd;
    w.st[w.depth] = *st;
    w.len[w.depth] = n + 1 + strlen(name);
}

/* A symlink met on the way, `name` in the current dir: followed only if
 * nobody but root (or we) made it or can change it. Its target goes in front
 * of `rest` in `todo`. */
static void follow(int link, const struct stat *st, const char *name, char *todo, size_t size,
                   const char *rest, const char *given) {
    static char target[PATH_MAX], joined[2 * PATH_MAX];
    if (!trusted_owner(st->st_uid))
        fail("unsafe cache dir %s: %s/%s is a symlink owned by uid %u", given, w.path, name,
             (unsigned)st->st_uid);
    if (w.st[w.depth].st_mode & (S_IWGRP | S_IWOTH))
        fail("unsafe cache dir %s: %s/%s is a symlink in a directory others can write", given,
             w.path, name);
    if (++w.links > MAX_LINKS)
        fail("cache dir %s: too many levels of symlinks", given);
    ssize_t n = readlinkat(link, "", target, sizeof target - 1);
    if (n <= 0 || n >= (ssize_t)sizeof target - 1)
        fail("cache dir %s: %s/%s: cannot read the symlink: %s", given, w.path, name,
             n < 0 ? strerror(errno) : "too long");
    target[n] = 0;
    if (snprintf(joined, sizeof joined, "%s%s", target, rest) >= (int)size)
        fail("cache dir %s: path too long", given);
    strcpy(todo, joined);
    if (target[0] == '/')
        walk_up(0);
}

/* Open the next name in the current dir without following it, creating it
 * (a directory) if it is missing. */
static int open_step(const char *name, int last, struct stat *st, const char *given) {
    int at = w.fd[w.depth];
    int fd = openat(at, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        if (mkdirat(at, name, last ? 0700 : 0755) != 0 && errno != EEXIST)
            fail("cannot create cache dir %s/%s: %s (set IF_INJECT_EXE_CACHE to a root-only dir)",
                 w.path, name, strerror(errno));
        fd = openat(at, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0 || fstat(fd, st) != 0)
        fail("cache dir %s: %s/%s: %s", given, w.path, name, strerror(errno));
    return fd;
}

/* Walk `given` from /, one name at a time, checking each directory before
 * looking into it (see the top). Returns an fd of the named dir; `real` gets
 * its physical path. */
static int open_cache_dir(const char *given, char *real) {
    static char todo[2 * PATH_MAX];
    char name[NAME_MAX + 1];
    const char *why;
    w.depth = 0;
    w.links = 0;
    w.len[0] = 0;
    w.path[0] = 0;
    w.fd[0] = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (w.fd[0] < 0 || fstat(w.fd[0], &w.st[0]) != 0)
        fail("cannot open /: %s", strerror(errno));
    snprintf(todo, sizeof todo, "%s", given);
    for (const char *p = todo;;) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        size_t n = strcspn(p, "/");
        if (n > NAME_MAX)
            fail("cache dir %s: a name is too long", given);
        memcpy(name, p, n);
        name[n] = 0;
        p += n;
        if (!strcmp(name, "."))
            continue;
        if (!strcmp(name, "..")) { /* the physical parent, checked on the way down */
            walk_up(w.depth ? w.depth - 1 : 0);
            continue;
        }
        if ((why = unsafe_dir(&w.st[w.depth], 1)))
            fail("unsafe cache dir %s: %s is %s", given, walk_here(), why);
        struct stat st;
        int fd = open_step(name, p[strspn(p, "/")] == 0, &st, given);
        if (S_ISLNK(st.st_mode)) {
            static char rest[2 * PATH_MAX];
            snprintf(rest, sizeof rest, "%s", p);
            follow(fd, &st, name, todo, sizeof todo, rest, given);
            close(fd);
            p = todo;
            continue;
        }
        if (!S_ISDIR(st.st_mode))
            fail("unsafe cache dir %s: %s/%s is not a directory", given, w.path, name);
        walk_down(fd, &st, name, given);
    }
    if ((why = unsafe_dir(&w.st[w.depth], 0)))
        fail("unsafe cache dir %s: %s", given, why);
    if (w.st[w.depth].st_uid != me)
        fail("unsafe cache dir %s: owned by uid %u, not by the user running if-inject (%u)",
             given, (unsigned)w.st[w.depth].st_uid, (unsigned)me);
    int fd = openat(w.fd[w.depth], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        fail("cache dir %s: %s", given, strerror(errno));
    snprintf(real, PATH_MAX, "%s", walk_here());
    walk_up(0);
    close(w.fd[0]);
    return fd;
}

/* ---- our own dir in it ------------------------------------------------- */

/* Whether `dir` holds our marker, as we write it. */
static int marked(int dir) {
    char text[sizeof MARKER_TEXT];
    struct stat st;
    int fd = openat(dir, MARKER, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    int ok = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == me
        && st.st_size == (off_t)sizeof MARKER_TEXT - 1
        && pread(fd, text, sizeof text, 0) == (ssize_t)sizeof MARKER_TEXT - 1
        && memcmp(text, MARKER_TEXT, sizeof MARKER_TEXT - 1) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Remove our temporary own dir `name` (the marker, then the dir, if empty). */
static void unmake(int named, const char *name) {
    int fd = openat(named, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    unlinkat(fd, MARKER, 0);
    close(fd);
    unlinkat(named, name, AT_REMOVEDIR);
}

/* The temporary own dirs that a killed run (SIGKILL, a power loss) left in
 * the named dir: ours by name, owner and marker, and older than a minute. */
static void sweep_new_dirs(int named) {
    static const char prefix[] = "." OWN_DIR "-new-";
    int fd = dup(named);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        if (fd >= 0)
            close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(dir))) {
        const char *digits = e->d_name + sizeof prefix - 1;
        if (strncmp(e->d_name, prefix, sizeof prefix - 1) || !*digits || digits[strspn(digits, "0123456789")])
            continue;
        struct stat st;
        int at = openat(named, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (at < 0)
            continue;
        int left = fstat(at, &st) == 0 && st.st_uid == me && time(NULL) - st.st_mtime >= 60 && marked(at);
        close(at);
        if (left)
            unmake(named, e->d_name);
    }
    closedir(dir);
}

/* OWN_DIR, made whole: a temporary dir with the marker in it, renamed into
 * place unless another run was first. */
static void make_own_dir(int named, const char *real) {
    char tmp[64];
    sweep_new_dirs(named);
    unique_name(tmp, sizeof tmp, "." OWN_DIR "-new-");
    if (mkdirat(named, tmp, 0700) != 0)
        fail("cannot create %s/%s: %s", real, tmp, strerror(errno));
    int dir = openat(named, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int fd = dir < 0 ? -1 : openat(dir, MARKER, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    int ok = fd >= 0 && write(fd, MARKER_TEXT, sizeof MARKER_TEXT - 1) == sizeof MARKER_TEXT - 1
        && close(fd) == 0 && fchmod(dir, 0700) == 0;
    int e = errno;
    if (dir >= 0)
        close(dir);
    if (ok && renameat2(named, tmp, named, OWN_DIR, RENAME_NOREPLACE) == 0)
        return;
    e = ok ? errno : e;
    struct stat st;
    /* No RENAME_NOREPLACE on this filesystem: a plain rename of the dir made
     * whole, when nothing has the name (a rename does not replace a dir with
     * something in it, so another run's stays). */
    if (ok && e == EINVAL) {
        if (fstatat(named, OWN_DIR, &st, AT_SYMLINK_NOFOLLOW) == 0)
            e = EEXIST;
        else if (errno != ENOENT)
            e = errno;
        else if (renameat(named, tmp, named, OWN_DIR) == 0)
            return;
        else
            e = errno == ENOTEMPTY ? EEXIST : errno;
    }
    unmake(named, tmp);
    if (ok && e == EEXIST)
        return; /* another run made it: checked when opened */
    fail("cannot create %s/%s: %s", real, OWN_DIR, strerror(e));
}

/* OWN_DIR in the named dir `named`, made if missing, and refused unless it is
 * as we make it: a directory, ours, mode 0700, on the same mount, marked. */
static int open_own_dir(int named, const char *real) {
    struct where outer;
    struct statx sx;
    if (where_at(named, "", &outer, NULL) != 0)
        fail("cache dir %s: %s", real, strerror(errno));
    for (int made = 0;; made = 1) {
        int fd = openat(named, OWN_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT && !made) {
            make_own_dir(named, real);
            continue;
        }
        if (fd < 0)
            fail("refusing cache dir %s/%s: %s (if-inject did not make it; remove it, or set "
                 "IF_INJECT_EXE_CACHE to another dir)", real, OWN_DIR, strerror(errno));
        if (where_at(fd, "", &own_where, &sx) != 0)
            fail("cache dir %s/%s: %s", real, OWN_DIR, strerror(errno));
        if (sx.stx_uid != me)
            fail("refusing cache dir %s/%s: owned by uid %u, not %u as if-inject makes it "
                 "(it changes nothing it did not make)", real, OWN_DIR, (unsigned)sx.stx_uid, (unsigned)me);
        if ((sx.stx_mode & 07777) != 0700)
            fail("refusing cache dir %s/%s: mode %04o, not 0700 as if-inject makes it "
                 "(it changes nothing it did not make)", real, OWN_DIR, (unsigned)(sx.stx_mode & 07777));
        if (!same_mount(&outer, &own_where))
            fail("refusing cache dir %s/%s: it is a mount point (if-inject did not make it)", real, OWN_DIR);
        if (!marked(fd))
            fail("refusing cache dir %s/%s: it has no %s marker, so if-inject did not make it "
                 "(remove it, or set IF_INJECT_EXE_CACHE to another dir)", real, OWN_DIR, MARKER);
        return fd;
    }
}

/* ---- removing what we made (in OWN_DIR only) -------------------------- */

/* Remove `name` in `parent` and all under it, but nothing on another mount
 * than `top` (a mount point is not entered, so it and its parents stay) and
 * no symlink's target (symlinks are unlinked, never followed). */
static void remove_tree(int parent, const char *name, const struct where *top) {
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOTDIR || errno == ELOOP)
            unlinkat(parent, name, 0);
        return;
    }
    struct where here;
    if (where_at(fd, "", &here, NULL) != 0 || !same_mount(&here, top)) {
        close(fd);
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
        if (e->d_type == DT_DIR || e->d_type == DT_UNKNOWN)
            remove_tree(fd, e->d_name, top); /* unlinks what turns out not to be a dir */
        else
            unlinkat(fd, e->d_name, 0);
    }
    closedir(dir);
    unlinkat(parent, name, AT_REMOVEDIR);
}

static int all_of(const char *s, const char *set) { return *s && s[strspn(s, set)] == 0; }

static int is_key(const char *name) { return strlen(name) == KEY_LEN && all_of(name, "0123456789abcdef"); }

/* Names that only we give in OWN_DIR: 1 an entry, 2 an unpack (maybe under
 * way), 3 an entry set aside for removal. */
static int our_name(const char *name) {
    if (is_key(name))
        return 1;
    if (!strncmp(name, ".unpack-", 8) && strlen(name) > 25 && name[24] == '-'
        && strspn(name + 8, "0123456789abcdef") == 16 && all_of(name + 25, "0123456789"))
        return 2;
    if (!strncmp(name, ".remove-broken-", 15) && all_of(name + 15, "0123456789"))
        return 3;
    if (!strncmp(name, ".remove-", 8) && all_of(name + 8, "0123456789"))
        return 3;
    return 0;
}

/* Every run holds a shared flock on its entry while it runs (the fd stays
 * open across exec), and an unpack holds one on its temporary dir. What can
 * be locked exclusively is in nobody's use: other builds' entries and the
 * leftovers of crashed unpacks. Removed when a new build is unpacked, so the
 * cache holds the builds in use and the newest. Only our names in OWN_DIR,
 * only directories of ours on its mount. */
static void prune(int own, const char *keep) {
    int fd = dup(own);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir)
        return;
    struct dirent *e;
    while ((e = readdir(dir))) {
        int kind = our_name(e->d_name);
        if (!kind || !strcmp(e->d_name, keep))
            continue;
        struct statx sx;
        struct where at;
        if (where_at(own, e->d_name, &at, &sx) != 0 || !S_ISDIR(sx.stx_mode) || sx.stx_uid != me
            || !same_mount(&at, &own_where))
            continue;
        if (kind == 2 && time(NULL) - sx.stx_mtime.tv_sec < 60)
            continue; /* maybe just made, not yet locked by its unpacker */
        int victim = openat(own, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (victim < 0)
            continue;
        struct stat st, now;
        char aside[64];
        unique_name(aside, sizeof aside, ".remove-");
        /* Locked, and still what the name gives now: not a new unpack of the
         * same key made after the one we opened was pruned by another run. */
        if (flock(victim, LOCK_EX | LOCK_NB) == 0 && fstat(victim, &st) == 0 && st.st_ino == sx.stx_ino
            && fstatat(own, e->d_name, &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_ino == st.st_ino
            && now.st_dev == st.st_dev && renameat(own, e->d_name, own, aside) == 0)
            remove_tree(own, aside, &own_where);
        close(victim);
    }
    closedir(dir);
}

/* ---- unpacking ---------------------------------------------------------- */

/* The payload: a zlib stream of records, each
 *   u8 kind ('d' dir, 'f' file, 'e' end), u32 mode, u16 path length,
 *   u64 size, the path (relative, '/'-separated), then `size` bytes of data.
 * The list after it holds the same records without the data: each record
 * unpacked must be the list's next one, so what a reuse checks against the
 * list is what was unpacked. */
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

static void unpack(int self, const struct trailer *t, const struct list *l, int dir) {
    struct inflater *f = calloc(1, sizeof *f);
    if (!f || inflateInit(&f->z) != Z_OK)
        fail("out of memory");
    f->self = self;
    f->offset = t->payload_offset;
    f->left = t->payload_size;
    for (size_t pos = 0;; pos += HEAD) {
        unsigned char head[HEAD];
        char path[PATH_MAX];
        zread(f, head, sizeof head);
        unsigned kind = head[0], mode = (unsigned)le(head + 1, 4);
        size_t len = (size_t)le(head + 5, 2);
        uint64_t size = le(head + 7, 8);
        if (pos + HEAD > l->size || memcmp(l->data + pos, head, HEAD) != 0)
            fail("payload is corrupt: it does not match its list");
        if (kind == 'e') {
            if (pos + HEAD != l->size)
                fail("payload is corrupt: it does not match its list");
            break;
        }
        if (len == 0 || len >= sizeof path)
            fail("payload is corrupt: bad record");
        zread(f, path, len);
        path[len] = 0;
        if (pos + HEAD + len > l->size || memcmp(l->data + pos + HEAD, path, len) != 0)
            fail("payload is corrupt: it does not match its list");
        pos += len;
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

/* What the slots must hold for the entry `key` in OWN_DIR of the cache dir `real`. */
struct slots {
    char interp[SLOT], rpath[SLOT];
};

static void slot_paths(const char *real, const char *key, struct slots *want) {
    memset(want, 0, sizeof *want);
    const char *sep = strcmp(real, "/") ? "/" : "";
    int n = snprintf(want->interp, SLOT, "%s%s" OWN_DIR "/%s/" LOADER, real, sep, key);
    if (n < 0 || n >= SLOT)
        fail("cache dir path too long: %s (at most %d characters)", real,
             SLOT - 1 - (n - (int)strlen(real)));
    if (snprintf(want->rpath, SLOT, "%s%s" OWN_DIR "/%s/" LIBDIR, real, sep, key) >= SLOT)
        fail("cache dir path too long: %s", real); /* shorter than interp: never */
}

/* Whether the unpacked program's slot at `offset` holds `want` (NUL-padded). */
static int slot_is(int program, uint64_t offset, const char *want) {
    char got[SLOT];
    return pread(program, got, SLOT, (off_t)offset) == SLOT && memcmp(got, want, SLOT) == 0;
}

/* Fill the slots of a freshly unpacked program, after checking they are the
 * build's placeholders (a damaged trailer must not make us write elsewhere). */
static int is_placeholder(int fd, uint64_t offset, char fill) {
    char got[SLOT];
    if (pread(fd, got, SLOT, (off_t)offset) != SLOT || got[0] != '/' || got[SLOT - 1] != 0)
        return 0;
    for (int i = 1; i < SLOT - 1; i++)
        if (got[i] != fill)
            return 0;
    return 1;
}

static void fill_slots(int dir, const struct trailer *t, const struct slots *want) {
    int fd = openat(dir, PROGRAM, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        fail("payload is corrupt: no %s in it", PROGRAM);
    if (!is_placeholder(fd, t->interp_offset, 'I') || !is_placeholder(fd, t->rpath_offset, 'R'))
        fail("payload is corrupt: %s has no interpreter slots", PROGRAM);
    if (pwrite(fd, want->interp, SLOT, (off_t)t->interp_offset) != SLOT
        || pwrite(fd, want->rpath, SLOT, (off_t)t->rpath_offset) != SLOT || close(fd) != 0)
        fail("unpacking %s: %s", PROGRAM, strerror(errno));
}

/* ---- reusing an entry ------------------------------------------------- */

/* The names in the directory `fd` (read from its start), . and .. aside;
 * -1 if unreadable. */
static long count_names(int fd) {
    static char buf[1 << 15];
    long n = 0;
    ssize_t got;
    while ((got = getdents64(fd, buf, sizeof buf)) > 0)
        for (ssize_t at = 0; at < got;) {
            struct dirent64 *d = (struct dirent64 *)(buf + at);
            n += strcmp(d->d_name, ".") && strcmp(d->d_name, "..");
            at += d->d_reclen;
        }
    return got < 0 ? -1 : n;
}

/* The directories from the entry down to the one being checked: the list
 * is in depth-first order (build_exe.py sorts it), so each name is looked up
 * in its own directory's fd, not by its whole path: half the cost. */
#define MAX_DIR_DEPTH 64 /* build_exe.py MAX_DEPTH */
static struct {
    int fd[MAX_DIR_DEPTH];
    size_t len[MAX_DIR_DEPTH]; /* of the directory's path in the entry */
    int depth;
    char path[PATH_MAX];
} dirs;

/* The fd of `path`'s directory (or -1 if not open), going up as needed. */
static int dir_of(const char *path, const char **name) {
    const char *slash = strrchr(path, '/');
    size_t len = slash ? (size_t)(slash - path) : 0;
    *name = slash ? slash + 1 : path;
    while (dirs.depth > 0 && (dirs.len[dirs.depth] != len || memcmp(dirs.path, path, len)))
        close(dirs.fd[dirs.depth--]);
    return dirs.len[dirs.depth] == len ? dirs.fd[dirs.depth] : -1;
}

/* Check one record of the list (see entry_matches); 0 if it does not match.
 * A directory's names are added to *found, and it becomes the current one. */
static int record_matches(unsigned kind, unsigned mode, uint64_t size, const char *path, int program,
                          long *found) {
    struct stat st;
    const char *name;
    int at = dir_of(path, &name);
    if (at < 0)
        return 0; /* the list is not depth-first: not ours */
    if (kind == 'f') {
        int got = dirs.depth == 0 && !strcmp(name, PROGRAM) ? fstat(program, &st)
                                                            : fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW);
        return got == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == size && st.st_uid == me
            && (st.st_mode & 07777) == (mode & 0755);
    }
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    long n = fd < 0 || fstat(fd, &st) != 0 || st.st_uid != me || (st.st_mode & 07777) != (mode & 0755)
        ? -1 : count_names(fd);
    if (n < 0 || dirs.depth + 1 >= MAX_DIR_DEPTH) { /* build_exe.py packs none that deep */
        if (fd >= 0)
            close(fd);
        return 0;
    }
    *found += n;
    dirs.depth++;
    dirs.fd[dirs.depth] = fd;
    dirs.len[dirs.depth] = strlen(path);
    memcpy(dirs.path, path, strlen(path) + 1);
    return 1;
}

/* Whether the entry holds what the list says and nothing else: every
 * directory and file, of its type, mode, owner (we) and, for a file, size;
 * no other name in any of its directories. `program` is PROGRAM, opened:
 * that file is the one checked (and run). */
static int entry_matches(int entry, int program, const struct list *l) {
    size_t pos = 0;
    unsigned kind = 0, mode = 0;
    uint64_t size = 0;
    char path[PATH_MAX];
    dirs.depth = 0;
    dirs.fd[0] = entry;
    dirs.len[0] = 0;
    long listed = 0, found = lseek(entry, 0, SEEK_SET) == 0 ? count_names(entry) : -1;
    int ok = found >= 0;
    while (ok && ((kind = list_next(l, &pos, &mode, &size, path)) == 'd' || kind == 'f')) {
        ok = record_matches(kind, mode, size, path, program, &found);
        listed++;
    }
    while (dirs.depth > 0)
        close(dirs.fd[dirs.depth--]);
    return ok && kind == 'e' && found == listed;
}

/* An exclusive lock on the entry `fd` if no run uses it: other runs checking
 * it hold theirs for milliseconds, a run using it for as long as it runs. */
static int lock_when_unused(int fd) {
    for (int tries = 0; tries < 20; tries++) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return 1;
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return 0;
}

/* The entry, opened and share-locked (see prune), if it is there and as we
 * leave it: a directory of ours (0700), on OWN_DIR's mount, holding what the
 * list says, the program's slots naming this entry. Returns -1 if there is
 * none; else *program is the program, opened (close-on-exec). The entry's fd
 * is not close-on-exec: it holds the lock for as long as the program runs. */
static int open_entry(int own, const char *key, const struct trailer *t, const struct list *l,
                      const struct slots *want, int *program, int unpacked) {
    struct stat st, now;
    struct where at;
    int fd = openat(own, key, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    if (flock_wait(fd, LOCK_SH) != 0 || fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    if (fstatat(own, key, &now, AT_SYMLINK_NOFOLLOW) != 0 || now.st_ino != st.st_ino) {
        close(fd); /* pruned while we waited for the lock */
        return -1;
    }
    *program = openat(fd, PROGRAM, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    int intact = st.st_uid == me && (st.st_mode & 07777) == 0700 && where_at(fd, "", &at, NULL) == 0
        && same_mount(&at, &own_where) && *program >= 0 && entry_matches(fd, *program, l);
    if (intact && slot_is(*program, t->interp_offset, want->interp)
        && slot_is(*program, t->rpath_offset, want->rpath))
        return fd;
    if (*program >= 0)
        close(*program);
    /* Unpacked under another path (the same dir seen elsewhere: a bind mount),
     * or not as we leave it. Never pull it from under a run that uses it: what
     * looks damaged to us may be fine (a damaged copy of this executable, with
     * the same key; a check that failed for want of fds). */
    if (unpacked >= 0)
        flock(unpacked, LOCK_UN); /* our own unpack's lock is not another run's */
    if (!lock_when_unused(fd)) {
        if (intact)
            fail("cache entry %s is in use by a run that sees the cache dir at another path: "
                 "set IF_INJECT_EXE_CACHE to a dir of its own", key);
        fail("cache entry %s does not match this executable, and a run uses it: not touching it "
             "(a damaged copy of the executable? copy it again)", key);
    }
    /* Not as we leave it, and unused: set it aside, to be pruned, and unpack anew. */
    char aside[64];
    unique_name(aside, sizeof aside, ".remove-broken-");
    if (renameat(own, key, own, aside) != 0 && errno != ENOENT) /* ENOENT: another run did */
        fail("cannot set aside broken cache entry %s: %s", key, strerror(errno));
    close(fd);
    return -1;
}

/* Unpack into a temporary dir, then rename it to `key`: the entry never
 * exists half-written. Of two runs doing this at once, the second rename
 * fails and that run removes its copy and uses the other's. Returns the
 * unpacked dir, share-locked. */
static int extract(int self, const struct trailer *t, const struct list *l, int own, const char *key,
                   const struct slots *want) {
    char tmp[64], prefix[32];
    snprintf(prefix, sizeof prefix, ".unpack-%.16s-", key);
    unique_name(tmp, sizeof tmp, prefix);
    if (mkdirat(own, tmp, 0700) != 0)
        fail("cannot create %s in the cache dir: %s", tmp, strerror(errno));
    unpack_parent = own;
    snprintf(unpack_name, sizeof unpack_name, "%s", tmp);
    int dir = openat(own, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir < 0 || flock(dir, LOCK_SH) != 0)
        fail("cannot open %s: %s", tmp, strerror(errno));
    unpack(self, t, l, dir);
    fill_slots(dir, t, want);
    if (syncfs(dir) != 0 || fchmod(dir, 0700) != 0)
        fail("cannot sync %s: %s", tmp, strerror(errno));
    if (renameat(own, tmp, own, key) != 0) {
        if (errno != EEXIST && errno != ENOTEMPTY)
            fail("cannot rename %s to %s: %s", tmp, key, strerror(errno));
        remove_tree(own, tmp, &own_where); /* another run was first */
    }
    unpack_parent = -1;
    prune(own, key);
    return dir; /* still locked: keeps the entry from being pruned until we hold it */
}

/* ---- main -------------------------------------------------------------- */

/* The entry of this build, checked (unpacked first if need be), and its
 * program opened into *program. */
static int ready_entry(int self, const struct trailer *t, const char *key, char *real,
                       int *program) {
    static char given[PATH_MAX];
    static struct slots want;
    static struct list l;
    read_list(self, t, &l);
    cache_dir_path(given, sizeof given);
    int named = open_cache_dir(given, real);
    int own = open_own_dir(named, real);
    close(named);
    slot_paths(real, key, &want);
    int entry = open_entry(own, key, t, &l, &want, program, -1);
    for (int tries = 0; entry < 0 && tries < 3; tries++) {
        int unpacked = extract(self, t, &l, own, key, &want);
        entry = open_entry(own, key, t, &l, &want, program, unpacked);
        close(unpacked);
    }
    if (entry < 0)
        fail("cache entry %s/" OWN_DIR "/%s keeps disappearing", real, key);
    close(own);
    free(l.data);
    return entry;
}

#ifdef MEASURE_REUSE
/* tools/measure_exe.py: `launcher-measure EXE N` times N reuses of EXE's warm
 * entry (all the launcher does up to the exec) and prints each in microseconds. */
int main(int argc, char **argv) {
    me = geteuid();
    if (argc != 3)
        fail("usage: %s EXE RUNS", argv[0]);
    for (int i = 0, runs = atoi(argv[2]); i < runs; i++) {
        struct timespec start, end;
        clock_gettime(CLOCK_MONOTONIC, &start);
        int self = open_self(argv[1]), program;
        struct trailer t;
        read_trailer(self, &t);
        char key[KEY_LEN + 1], real[PATH_MAX];
        memcpy(key, t.cache_key, KEY_LEN);
        key[KEY_LEN] = 0;
        int entry = ready_entry(self, &t, key, real, &program);
        clock_gettime(CLOCK_MONOTONIC, &end);
        printf("%ld\n", (end.tv_sec - start.tv_sec) * 1000000L + (end.tv_nsec - start.tv_nsec) / 1000);
        close(program);
        close(entry);
        close(self);
    }
    return 0;
}
#else
/* Signals that would end us (not the faults of our own code): held while the
 * cache changes, so that an unpack is never left half made. Still pending
 * when let go, their default action ends us then, as before we started. */
static void hold_signals(sigset_t *old) {
    sigset_t held;
    sigfillset(&held);
    int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT};
    for (size_t i = 0; i < sizeof faults / sizeof *faults; i++)
        sigdelset(&held, faults[i]);
    sigprocmask(SIG_BLOCK, &held, old);
}

int main(int argc, char **argv) {
    me = geteuid();
    int self = open_self(argv[0]), program;
    struct trailer t;
    read_trailer(self, &t);
    char key[KEY_LEN + 1], real[PATH_MAX], exe[PATH_MAX];
    memcpy(key, t.cache_key, KEY_LEN);
    key[KEY_LEN] = 0;
    hold_signals(&mask_before);
    holding = 1;
    ready_entry(self, &t, key, real, &program);
    holding = 0;
    sigprocmask(SIG_SETMASK, &mask_before, NULL); /* one that came meanwhile ends us now */
    /* -version alone is answered from the trailer (the version stamped into the
     * bundled if_inject.py): no need to start Python for it. Only now, so that
     * a first run unpacks and checks its entry as any other command would. */
    if (argc == 2 && (strcmp(argv[1], "-version") == 0 || strcmp(argv[1], "--version") == 0)) {
        if (printf("%.*s\n", (int)strnlen(t.version, sizeof t.version), t.version) < 0 || fflush(stdout) != 0)
            fail("cannot write the version: %s", strerror(errno));
        return 0;
    }
    close(self);
    const char *sep = strcmp(real, "/") ? "/" : "";
    if (snprintf(exe, sizeof exe, "%s%s" OWN_DIR "/%s/" PROGRAM, real, sep, key) >= (int)sizeof exe)
        fail("cache dir path too long");
    if (no_proc) /* the bootloader, too, then finds itself by argv[0] */
        argv[0] = exe;
    fexecve(program, argv, environ); /* the file that was checked, not its path again */
    fail("cannot run %s: %s%s", exe, strerror(errno),
         errno == EACCES ? " (a noexec mount? set IF_INJECT_EXE_CACHE to a dir on another)" : "");
}
#endif

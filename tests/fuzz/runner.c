/*
 * tests/fuzz/runner.c - the main() of a fuzz target when libFuzzer is not
 * available (gcc builds, `make test`). It takes libFuzzer's command line
 * (the subset scry uses) so that ctest calls both builds alike:
 *
 *   fuzz_X [-max_total_time=S] [-runs=N] [-seed=N] CORPUS_DIR_OR_FILE...
 *
 * Every corpus file is replayed first (a regression test); then, for S
 * seconds or N runs, inputs are mutated at random from the corpus (byte
 * flips, inserts, deletes, copies, splices, interesting numbers) and run.
 * Without coverage feedback this finds less than libFuzzer, but it runs
 * every target under ASan+UBSan in every `make test`. The input that made a
 * target abort is written to ./crash-<pid> first.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

typedef struct blob {
	uint8_t *p;
	size_t n;
} blob;

static blob *corpus;
static size_t ncorpus, acorpus;
static const uint8_t *current;
static size_t current_n;

static void add_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		exit(1);
	}
	blob b = { NULL, 0 };
	size_t cap = 0;
	for (;;) {
		if (b.n == cap) {
			cap = cap ? cap * 2 : 4096;
			b.p = realloc(b.p, cap);
		}
		size_t r = fread(b.p + b.n, 1, cap - b.n, f);
		if (!r)
			break;
		b.n += r;
	}
	fclose(f);
	if (ncorpus == acorpus) {
		acorpus = acorpus ? acorpus * 2 : 64;
		corpus = realloc(corpus, acorpus * sizeof *corpus);
	}
	corpus[ncorpus++] = b;
}

static void add_path(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		perror(path);
		exit(1);
	}
	if (!S_ISDIR(st.st_mode)) {
		add_file(path);
		return;
	}
	struct dirent **names;
	int n = scandir(path, &names, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		if (names[i]->d_name[0] != '.') {
			char full[4096];
			snprintf(full, sizeof full, "%s/%s", path, names[i]->d_name);
			add_path(full);
		}
		free(names[i]);
	}
	free(names);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* One random mutation of b (capacity cap) in place; returns the new size. */
static size_t mutate(uint8_t *b, size_t n, size_t cap)
{
	static const int64_t interesting[] = { 0, 1, -1, 127, 128, 255, 256, 32767, 65535, 0x7fffffff,
	                                       -2147483647 - 1, 0xffffffffll };
	switch (rnd() % 8) {
	case 0: /* flip a bit */
		if (n)
			b[rnd() % n] ^= (uint8_t)(1u << (rnd() % 8));
		return n;
	case 1: /* random byte */
		if (n)
			b[rnd() % n] = (uint8_t)rnd();
		return n;
	case 2: { /* insert random bytes */
		size_t k = 1 + rnd() % 8, at = n ? rnd() % (n + 1) : 0;
		if (n + k > cap)
			return n;
		memmove(b + at + k, b + at, n - at);
		for (size_t i = 0; i < k; i++)
			b[at + i] = rnd() % 4 ? (uint8_t)"0123456789;'\"()$/*-\n\\,: \x01\x1b"[rnd() % 26] : (uint8_t)rnd();
		return n + k;
	}
	case 3: { /* delete a range */
		if (!n)
			return n;
		size_t at = rnd() % n, k = 1 + rnd() % (n - at < 16 ? n - at : 16);
		memmove(b + at, b + at + k, n - at - k);
		return n - k;
	}
	case 4: { /* duplicate a range elsewhere */
		if (!n)
			return n;
		size_t from = rnd() % n, k = 1 + rnd() % (n - from < 64 ? n - from : 64), at = rnd() % (n + 1);
		if (n + k > cap)
			return n;
		uint8_t tmp[64];
		memcpy(tmp, b + from, k);
		memmove(b + at + k, b + at, n - at);
		memcpy(b + at, tmp, k);
		return n + k;
	}
	case 5: { /* splice from another corpus entry */
		blob *o = &corpus[rnd() % ncorpus];
		if (!o->n || !n)
			return n;
		size_t from = rnd() % o->n, k = 1 + rnd() % (o->n - from), at = rnd() % n;
		if (at + k > cap)
			k = cap - at;
		memcpy(b + at, o->p + from, k);
		return at + k > n ? at + k : n;
	}
	case 6: { /* an interesting integer, 1/2/4 bytes, either endianness */
		if (n < 4)
			return n;
		int64_t v = interesting[rnd() % (sizeof interesting / sizeof *interesting)];
		size_t w = (size_t)1 << (rnd() % 3), at = rnd() % (n - w + 1);
		bool big = rnd() & 1;
		for (size_t i = 0; i < w; i++)
			b[at + i] = (uint8_t)(v >> (8 * (big ? w - 1 - i : i)));
		return n;
	}
	default: { /* a long digit run */
		size_t k = 1 + rnd() % 40, at = n ? rnd() % (n + 1) : 0;
		if (n + k > cap)
			return n;
		memmove(b + at + k, b + at, n - at);
		for (size_t i = 0; i < k; i++)
			b[at + i] = (uint8_t)('0' + rnd() % 10);
		return n + k;
	}
	}
}

static void save_crash(void)
{
	if (!current)
		return;
	char name[64];
	snprintf(name, sizeof name, "crash-%d", (int)getpid());
	int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) {
		if (write(fd, current, current_n) == (ssize_t)current_n)
			fprintf(stderr, "runner: input written to %s (%zu bytes)\n", name, current_n);
		close(fd);
	}
	current = NULL;
}

static void on_signal(int sig)
{
	save_crash();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* ASan/UBSan call this before aborting (weak in the runtimes). */
void __sanitizer_set_death_callback(void (*cb)(void)) __attribute__((weak));

static void run(const uint8_t *p, size_t n)
{
	current = p;
	current_n = n;
	LLVMFuzzerTestOneInput(p, n);
	current = NULL;
}

int main(int argc, char **argv)
{
	double seconds = 0;
	long long runs = -1;
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++) {
		if (!strncmp(argv[i], "-max_total_time=", 16))
			seconds = atof(argv[i] + 16);
		else if (!strncmp(argv[i], "-runs=", 6))
			runs = atoll(argv[i] + 6);
		else if (!strncmp(argv[i], "-seed=", 6))
			rng_state = strtoull(argv[i] + 6, NULL, 10);
		else if (argv[i][0] == '-')
			continue; /* other libFuzzer flags: ignored */
		else
			add_path(argv[i]);
	}
	if (__sanitizer_set_death_callback)
		__sanitizer_set_death_callback(save_crash);
	signal(SIGABRT, on_signal);
	signal(SIGSEGV, on_signal);
	signal(SIGBUS, on_signal);
	if (rng_state == 0x9e3779b97f4a7c15ull)
		rng_state ^= (uint64_t)time(NULL);
	for (size_t i = 0; i < ncorpus; i++)
		run(corpus[i].p, corpus[i].n);
	fprintf(stderr, "runner: replayed %zu corpus inputs\n", ncorpus);
	if (!ncorpus || (seconds <= 0 && runs < 0)) {
		for (size_t i = 0; i < ncorpus; i++)
			free(corpus[i].p);
		free(corpus);
		return 0;
	}
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	size_t cap = 1 << 16;
	uint8_t *buf = malloc(cap);
	long long done = 0;
	for (;; done++) {
		if (runs >= 0 && done >= runs)
			break;
		if ((done & 63) == 0) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			if (seconds > 0 && (double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 >= seconds)
				break;
		}
		blob *src = &corpus[rnd() % ncorpus];
		size_t n = src->n < cap ? src->n : cap;
		memcpy(buf, src->p, n);
		int k = 1 + (int)(rnd() % 6);
		for (int m = 0; m < k; m++)
			n = mutate(buf, n, cap);
		/* An exact-size copy, so that ASan sees reads past the end. */
		uint8_t *in = malloc(n ? n : 1);
		memcpy(in, buf, n);
		run(in, n);
		free(in);
	}
	fprintf(stderr, "runner: %lld mutated inputs, 0 crashes\n", done);
	free(buf);
	for (size_t i = 0; i < ncorpus; i++)
		free(corpus[i].p);
	free(corpus);
	return 0;
}

/* fake_cuda.c - A TEST FAKE of the CUDA driver, built as libcuda.so.1 in its
 * own folder (build/test/runtime/fake_cuda/). It is not CUDA and runs nothing
 * on a GPU: it implements, on host memory, the subset of the driver API that
 * libmoe_runtime calls, so that the runtime's CUDA backend can be tested on
 * machines without a GPU. The runtime loads it through MOE_CUDA_DRIVER (or
 * LD_LIBRARY_PATH).
 *
 * What it does:
 * - one context per device; a per-thread context stack, and every memory,
 *   module, stream, launch and graph call fails with
 *   CUDA_ERROR_INVALID_CONTEXT when no context is current (as the driver does);
 * - cuMemAlloc is a 256-byte aligned malloc; copies are memcpy, checked to lie
 *   inside a live allocation;
 * - a module remembers its image: text after "\x7f" "ELF" is a (fake) cubin,
 *   anything else PTX; cuModuleGetFunction succeeds for names that appear in
 *   the image as a whole word, so a test sees whether the right image loaded;
 * - cuLaunchKernel checks the FORMAT.md parameters (seven: hidden, tokens,
 *   output, topk_ids, topk_weights, weights, workspace; every pointer inside a
 *   live allocation large enough for tokens rows) and "runs" a kernel that
 *   writes 1.0f + tokens into the first tokens*H floats of `output`, H from
 *   MOE_FAKE_CUDA_HIDDEN; with MOE_FAKE_CUDA_TOPK=k also topk_ids[i] = i and
 *   topk_weights[i] = hidden[i] for i < tokens*k;
 * - stream capture records launches into a graph; cuGraphLaunch replays them
 *   (re-checking the parameters, so a graph with stale buffers fails);
 * - work runs when it is queued, so an event is complete once recorded;
 *   events, waits and synchronizations are logged, so a test sees the order
 *   the runtime asked for. Streams and events are numbered from 1 in the
 *   order they are created ("stream create N", "event create N");
 * - cuTensorMapEncodeTiled checks its arguments as cuda.h documents them (and,
 *   stricter than the driver, that the region lies in one live allocation)
 *   and writes a recognizable map (fake_tensor_map below) into the 128 bytes;
 *   with MOE_FAKE_CUDA_TENSOR_MAPS set, every kernel checks that the
 *   workspace holds such maps at those offsets, describing live memory, as a
 *   TMA kernel would read them. Built with -DFAKE_CUDA_NO_TENSOR_MAP (as
 *   fake_cuda_old/libcuda.so.1) it lacks the function, as drivers before
 *   CUDA 12.0 do.
 *
 * Environment:
 *   MOE_FAKE_CUDA_LOG=FILE     append one line per notable call (see trace)
 *   MOE_FAKE_CUDA_NO_DEVICE=1  cuDeviceGetCount reports no device
 *   MOE_FAKE_CUDA_DEVICES=N    device count (default 1)
 *   MOE_FAKE_CUDA_CC=MN        compute capability M.N (default 80: 8.0)
 *   MOE_FAKE_CUDA_FAIL=NAME    the exported function NAME (e.g. cuLaunchKernel,
 *                              cuMemAlloc_v2) returns an error: a code typical
 *                              of that call, or MOE_FAKE_CUDA_FAIL_CODE
 *   MOE_FAKE_CUDA_FAIL_BYTES=N with MOE_FAKE_CUDA_FAIL=cuMemcpyHtoDAsync_v2:
 *                              only copies of N bytes fail
 *   MOE_FAKE_CUDA_HIDDEN=H, MOE_FAKE_CUDA_TOPK=k   what kernels write
 *   MOE_FAKE_CUDA_TENSOR_MAPS=O1,O2,...  workspace offsets where every kernel
 *                              expects an encoded tensor map
 *   MOE_FAKE_CUDA_LOG_STREAMS=1  lines of work queued on a stream (launch,
 *                              capture, graph launch, htod, dtoh, event
 *                              record, stream wait event, stream sync) end
 *                              with " on stream N"
 * The variables are read at every call, so a test may change them between
 * calls. fake_cuda_live() reports the objects not yet released;
 * fake_cuda_stream_id() the number of a stream (0: not a live stream);
 * fake_cuda_clobber() overwrites all device memory with garbage, as other
 * kernels reusing the memory would. */
#define _GNU_SOURCE

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

/* The driver API types, as sized in cuda.h. */
typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUgraph_st *CUgraph;
typedef struct CUgraphExec_st *CUgraphExec;
typedef struct CUevent_st *CUevent;
typedef uint32_t cuuint32_t;
typedef uint64_t cuuint64_t;
typedef struct {
  _Alignas(64) cuuint64_t opaque[16];
} CUtensorMap;

/* What the fake writes into a CUtensorMap: the arguments it was encoded
 * with. */
typedef struct {
  char magic[8]; /* FAKE_TENSOR_MAP_MAGIC, not NUL-terminated */
  uint32_t type, rank, swizzle, interleave;
  uint64_t address;
  uint64_t dims[5];
  uint64_t strides[4];
  uint32_t box[5];
} fake_tensor_map;
#define FAKE_TENSOR_MAP_MAGIC "FAKETMAP"
_Static_assert(sizeof(fake_tensor_map) <= sizeof(CUtensorMap),
               "a fake map fits in a CUtensorMap");

enum {
  SUCCESS = 0,
  INVALID_VALUE = 1,
  OUT_OF_MEMORY = 2,
  NOT_INITIALIZED = 3,
  INSUFFICIENT_DRIVER = 35,
  NO_DEVICE = 100,
  INVALID_DEVICE = 101,
  INVALID_IMAGE = 200,
  INVALID_CONTEXT = 201,
  INVALID_HANDLE = 400,
  NOT_FOUND = 500,
  LAUNCH_FAILED = 719,
  CAPTURE_UNSUPPORTED = 900,
  CAPTURE_INVALIDATED = 901,
  UNKNOWN = 999,
};

static const struct {
  CUresult code;
  const char *name, *text;
} kErrors[] = {
    {SUCCESS, "CUDA_SUCCESS", "no error"},
    {INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {INSUFFICIENT_DRIVER, "CUDA_ERROR_INSUFFICIENT_DRIVER",
     "CUDA driver version is insufficient for CUDA runtime version"},
    {NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE",
     "device kernel image is invalid"},
    {INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {CAPTURE_UNSUPPORTED, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
     "operation not permitted when stream is capturing"},
    {CAPTURE_INVALIDATED, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
     "operation failed due to a previous error during capture"},
    {UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

/*===----------------------------------------------------------------------===*
 * State
 *===----------------------------------------------------------------------===*/

#define MAX_DEVICES 8
#define MAX_SHARED_OPTIN 232448 /* bytes per block, as an H100 */
#define PARAMS 7                /* FORMAT.md: every kernel's parameters */

struct CUctx_st {
  int device;
  int retained;
};

struct CUfunc_st {
  char *name;
  CUmodule module;
  int max_dynamic_shared;
  struct CUfunc_st *next;
};

struct CUmod_st {
  int live;
  int cubin;
  char *text; /* the image's text, for finding function names */
  struct CUfunc_st *functions;
  struct CUmod_st *next;
};

typedef struct {
  CUfunction function;
  unsigned grid[3], block[3], shared;
  uint64_t params[PARAMS]; /* every parameter is 8 bytes (FORMAT.md) */
} launch_record;

typedef struct {
  launch_record *launches;
  int count, capacity;
} launch_list;

struct CUgraph_st {
  int live;
  launch_list list;
  struct CUgraph_st *next;
};

struct CUgraphExec_st {
  int live;
  launch_list list;
  struct CUgraphExec_st *next;
};

struct CUstream_st {
  int live;
  int id;
  int capturing;
  int capture_failed;
  CUgraph graph;
  struct CUstream_st *next;
};

struct CUevent_st {
  int live;
  int id;
  struct CUevent_st *next;
};

typedef struct allocation {
  int live;
  uint8_t *base;
  size_t size;
  struct allocation *next;
} allocation;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int initialized;
static struct CUctx_st contexts[MAX_DEVICES];
static allocation *allocations;
static struct CUmod_st *modules;
static struct CUstream_st *streams;
static struct CUgraph_st *graphs;
static struct CUgraphExec_st *execs;
static struct CUevent_st *events;
static int stream_count, event_count; /* ids handed out so far */

static __thread CUcontext context_stack[16];
static __thread int context_depth;

/*===----------------------------------------------------------------------===*
 * Helpers
 *===----------------------------------------------------------------------===*/

static long env_long(const char *name, long fallback) {
  const char *value = getenv(name);
  return value && *value ? strtol(value, NULL, 10) : fallback;
}

/* Appends one line to MOE_FAKE_CUDA_LOG. */
static void trace(const char *format, ...) {
  const char *path = getenv("MOE_FAKE_CUDA_LOG");
  if (!path || !*path)
    return;
  FILE *file = fopen(path, "a");
  if (!file)
    return;
  va_list args;
  va_start(args, format);
  vfprintf(file, format, args);
  va_end(args);
  fputc('\n', file);
  fclose(file);
}

/* The error MOE_FAKE_CUDA_FAIL asks `function` to return, or SUCCESS. */
static CUresult injected(const char *function, CUresult typical) {
  const char *target = getenv("MOE_FAKE_CUDA_FAIL");
  if (!target || strcmp(target, function) != 0)
    return SUCCESS;
  CUresult code = (CUresult)env_long("MOE_FAKE_CUDA_FAIL_CODE", typical);
  trace("fail %s %d", function, code);
  return code;
}

/* Returns from the calling function when MOE_FAKE_CUDA_FAIL names it. */
#define INJECT(function, typical)                                              \
  do {                                                                         \
    CUresult injected_ = injected(function, typical);                          \
    if (injected_ != SUCCESS)                                                  \
      return injected_;                                                        \
  } while (0)

static int device_count(void) {
  if (env_long("MOE_FAKE_CUDA_NO_DEVICE", 0))
    return 0;
  long count = env_long("MOE_FAKE_CUDA_DEVICES", 1);
  return count < 0 ? 0 : count > MAX_DEVICES ? MAX_DEVICES : (int)count;
}

/* Calls that need a current context check this first. */
static CUresult need_context(void) {
  if (!initialized)
    return NOT_INITIALIZED;
  if (context_depth == 0 || !context_stack[context_depth - 1]->retained)
    return INVALID_CONTEXT;
  return SUCCESS;
}

#define NEED_CONTEXT()                                                         \
  do {                                                                         \
    CUresult status_ = need_context();                                         \
    if (status_ != SUCCESS)                                                    \
      return status_;                                                          \
  } while (0)

/* The live allocation holding [pointer, pointer + bytes), or NULL. */
static allocation *find_allocation(CUdeviceptr pointer, size_t bytes) {
  for (allocation *a = allocations; a; a = a->next) {
    uintptr_t base = (uintptr_t)a->base;
    if (a->live && pointer >= base && pointer - base <= a->size &&
        bytes <= a->size - (pointer - base))
      return a;
  }
  return NULL;
}

static int stream_live(CUstream stream) {
  for (struct CUstream_st *s = streams; s; s = s->next)
    if (s == stream && s->live)
      return 1;
  return 0;
}

static int event_live(CUevent event) {
  for (struct CUevent_st *e = events; e; e = e->next)
    if (e == event && e->live)
      return 1;
  return 0;
}

/* " on stream N" with MOE_FAKE_CUDA_LOG_STREAMS set, else "". Called with
 * the lock held (it walks the streams). */
static const char *stream_tag(CUstream stream) {
  static __thread char tag[48];
  if (!env_long("MOE_FAKE_CUDA_LOG_STREAMS", 0))
    return "";
  snprintf(tag, sizeof(tag), " on stream %d",
           stream_live(stream) ? stream->id : 0);
  return tag;
}

static int function_live(CUfunction function) {
  for (struct CUmod_st *m = modules; m; m = m->next)
    for (struct CUfunc_st *f = m->functions; f; f = f->next)
      if (f == function)
        return m->live;
  return 0;
}

/* Does `name` occur in `text` as a whole identifier? */
static int has_word(const char *text, const char *name) {
  size_t length = strlen(name);
  if (length == 0)
    return 0;
  for (const char *at = strstr(text, name); at; at = strstr(at + 1, name)) {
    int before = at == text || !(isalnum((unsigned char)at[-1]) ||
                                 at[-1] == '_' || at[-1] == '$');
    char next = at[length];
    int after = !(isalnum((unsigned char)next) || next == '_' || next == '$');
    if (before && after)
      return 1;
  }
  return 0;
}

static void append(launch_list *list, const launch_record *record) {
  if (list->count == list->capacity) {
    int capacity = list->capacity ? 2 * list->capacity : 8;
    launch_record *grown =
        realloc(list->launches, (size_t)capacity * sizeof(*grown));
    if (!grown)
      abort(); /* a test fake: out of memory is not a case it handles */
    list->launches = grown;
    list->capacity = capacity;
  }
  list->launches[list->count++] = *record;
}

static void describe(const launch_record *r, char *out, size_t size) {
  snprintf(out, size, "%s grid=%u,%u,%u block=%u,%u,%u smem=%u",
           r->function->name, r->grid[0], r->grid[1], r->grid[2], r->block[0],
           r->block[1], r->block[2], r->shared);
}

/* Bytes per element of a CUtensorMapDataType; 0 for the packed types. */
static int element_bytes(int type) {
  static const int sizes[] = {1, 2, 4, 4, 8, 8, 2, 4, 8, 2, 4, 4, 4};
  return type >= 0 && type < (int)(sizeof(sizes) / sizeof(sizes[0]))
             ? sizes[type]
             : 0;
}

/* The bytes a map's region spans from its address: the largest index of
 * every dimension, plus the innermost element. */
static uint64_t map_extent(const fake_tensor_map *map) {
  int size = element_bytes((int)map->type);
  uint64_t end = map->dims[0] * (uint64_t)(size ? size : 1);
  for (uint32_t d = 1; d < map->rank; ++d)
    end += (map->dims[d] - 1) * map->strides[d - 1];
  return end;
}

/* With MOE_FAKE_CUDA_TENSOR_MAPS, a kernel reads the tensor maps at those
 * workspace offsets: each must be one cuTensorMapEncodeTiled wrote, for
 * memory that is still live. Called with the lock held. */
static CUresult check_tensor_maps(const char *launch, CUdeviceptr workspace) {
  const char *list = getenv("MOE_FAKE_CUDA_TENSOR_MAPS");
  if (!list || !*list)
    return SUCCESS;
  for (const char *at = list; *at;) {
    char *end;
    long long offset = strtoll(at, &end, 10);
    if (end == at)
      break;
    at = *end == ',' ? end + 1 : end;
    CUdeviceptr where = workspace + (CUdeviceptr)offset;
    if (!find_allocation(where, sizeof(CUtensorMap))) {
      trace("bad launch %s: workspace+%lld holds no 128-byte tensor map",
            launch, offset);
      return LAUNCH_FAILED;
    }
    fake_tensor_map map;
    memcpy(&map, (const void *)(uintptr_t)where, sizeof(map));
    if (memcmp(map.magic, FAKE_TENSOR_MAP_MAGIC, 8) != 0 || map.rank < 1 ||
        map.rank > 5) {
      trace("bad launch %s: workspace+%lld is not an encoded tensor map",
            launch, offset);
      return LAUNCH_FAILED;
    }
    if (!find_allocation((CUdeviceptr)map.address, map_extent(&map))) {
      trace("bad launch %s: the tensor map at workspace+%lld describes %llu "
            "bytes at %#llx, not live device memory",
            launch, offset, (unsigned long long)map_extent(&map),
            (unsigned long long)map.address);
      return LAUNCH_FAILED;
    }
  }
  return SUCCESS;
}

/* Checks a launch's parameters and runs the fake kernel. */
static CUresult execute(const launch_record *r) {
  char text[512];
  describe(r, text, sizeof(text));
  if (!function_live(r->function)) {
    trace("bad launch %s: its module was unloaded", text);
    return INVALID_HANDLE;
  }
  int64_t tokens;
  memcpy(&tokens, &r->params[1], sizeof(tokens));
  long hidden_size = env_long("MOE_FAKE_CUDA_HIDDEN", 0);
  long top_k = env_long("MOE_FAKE_CUDA_TOPK", 0);
  static const char *names[PARAMS] = {"hidden",   "tokens",       "output",
                                      "topk_ids", "topk_weights", "weights",
                                      "workspace"};
  size_t need[PARAMS] = {(size_t)(tokens * hidden_size) * 4,
                         0,
                         (size_t)(tokens * hidden_size) * 4,
                         (size_t)(tokens * top_k) * 4,
                         (size_t)(tokens * top_k) * 4,
                         1,
                         1};
  if (tokens < 1) {
    trace("bad launch %s: tokens = %lld", text, (long long)tokens);
    return INVALID_VALUE;
  }
  for (int i = 0; i < PARAMS; ++i) {
    if (i == 1)
      continue;
    if (!find_allocation(r->params[i], need[i] ? need[i] : 1)) {
      trace("bad launch %s: parameter %s (%#llx) is not %zu bytes of live "
            "device memory",
            text, names[i], (unsigned long long)r->params[i], need[i]);
      return INVALID_VALUE;
    }
  }
  CUresult maps = check_tensor_maps(text, r->params[6]);
  if (maps != SUCCESS)
    return maps;
  float *output = (float *)(uintptr_t)r->params[2];
  for (int64_t i = 0; i < tokens * hidden_size; ++i)
    output[i] = 1.0f + (float)tokens;
  const float *hidden = (const float *)(uintptr_t)r->params[0];
  int32_t *ids = (int32_t *)(uintptr_t)r->params[3];
  float *weights = (float *)(uintptr_t)r->params[4];
  for (int64_t i = 0; i < tokens * top_k && top_k <= hidden_size; ++i) {
    ids[i] = (int32_t)i;
    weights[i] = hidden[i];
  }
  return SUCCESS;
}

/*===----------------------------------------------------------------------===*
 * The driver API
 *===----------------------------------------------------------------------===*/

EXPORT CUresult cuGetErrorName(CUresult error, const char **name) {
  for (size_t i = 0; i < sizeof(kErrors) / sizeof(kErrors[0]); ++i)
    if (kErrors[i].code == error) {
      *name = kErrors[i].name;
      return SUCCESS;
    }
  *name = NULL;
  return INVALID_VALUE;
}

EXPORT CUresult cuGetErrorString(CUresult error, const char **text) {
  for (size_t i = 0; i < sizeof(kErrors) / sizeof(kErrors[0]); ++i)
    if (kErrors[i].code == error) {
      *text = kErrors[i].text;
      return SUCCESS;
    }
  *text = NULL;
  return INVALID_VALUE;
}

EXPORT CUresult cuInit(unsigned flags) {
  if (flags != 0)
    return INVALID_VALUE;
  INJECT("cuInit", INSUFFICIENT_DRIVER);
  pthread_mutex_lock(&lock);
  initialized = 1;
  pthread_mutex_unlock(&lock);
  trace("init");
  return SUCCESS;
}

EXPORT CUresult cuDeviceGetCount(int *count) {
  if (!initialized)
    return NOT_INITIALIZED;
  INJECT("cuDeviceGetCount", UNKNOWN);
  *count = device_count();
  return SUCCESS;
}

EXPORT CUresult cuDeviceGet(CUdevice *device, int ordinal) {
  if (!initialized)
    return NOT_INITIALIZED;
  INJECT("cuDeviceGet", INVALID_DEVICE);
  if (ordinal < 0 || ordinal >= device_count())
    return INVALID_DEVICE;
  *device = ordinal;
  return SUCCESS;
}

static void compute_capability(int *major, int *minor) {
  long cc = env_long("MOE_FAKE_CUDA_CC", 80);
  *major = (int)(cc / 10);
  *minor = (int)(cc % 10);
}

EXPORT CUresult cuDeviceGetName(char *name, int length, CUdevice device) {
  if (!initialized)
    return NOT_INITIALIZED;
  if (device < 0 || device >= device_count() || length < 1)
    return INVALID_VALUE;
  snprintf(name, (size_t)length, "Fake CUDA Device %d", device);
  return SUCCESS;
}

EXPORT CUresult cuDeviceGetAttribute(int *value, int attribute,
                                     CUdevice device) {
  if (!initialized)
    return NOT_INITIALIZED;
  INJECT("cuDeviceGetAttribute", INVALID_VALUE);
  if (device < 0 || device >= device_count())
    return INVALID_DEVICE;
  int major, minor;
  compute_capability(&major, &minor);
  switch (attribute) {
  case 75: /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR */
    *value = major;
    return SUCCESS;
  case 76: /* ..._MINOR */
    *value = minor;
    return SUCCESS;
  case 97: /* CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN */
    *value = MAX_SHARED_OPTIN;
    return SUCCESS;
  }
  return INVALID_VALUE;
}

EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *context, CUdevice device) {
  if (!initialized)
    return NOT_INITIALIZED;
  INJECT("cuDevicePrimaryCtxRetain", OUT_OF_MEMORY);
  if (device < 0 || device >= device_count())
    return INVALID_DEVICE;
  pthread_mutex_lock(&lock);
  contexts[device].device = device;
  contexts[device].retained++;
  *context = &contexts[device];
  pthread_mutex_unlock(&lock);
  trace("context retain %d", device);
  return SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice device) {
  if (!initialized)
    return NOT_INITIALIZED;
  if (device < 0 || device >= device_count())
    return INVALID_DEVICE;
  CUresult result = SUCCESS;
  pthread_mutex_lock(&lock);
  if (contexts[device].retained > 0)
    contexts[device].retained--;
  else
    result = INVALID_CONTEXT;
  pthread_mutex_unlock(&lock);
  trace("context release %d", device);
  return result;
}

EXPORT CUresult cuCtxPushCurrent_v2(CUcontext context) {
  if (!initialized)
    return NOT_INITIALIZED;
  INJECT("cuCtxPushCurrent_v2", INVALID_CONTEXT);
  if (!context || !context->retained ||
      context_depth == (int)(sizeof(context_stack) / sizeof(context_stack[0])))
    return INVALID_CONTEXT;
  context_stack[context_depth++] = context;
  return SUCCESS;
}

EXPORT CUresult cuCtxPopCurrent_v2(CUcontext *context) {
  if (!initialized)
    return NOT_INITIALIZED;
  if (context_depth == 0)
    return INVALID_CONTEXT;
  CUcontext top = context_stack[--context_depth];
  if (context)
    *context = top;
  return SUCCESS;
}

EXPORT CUresult cuStreamCreate(CUstream *stream, unsigned flags) {
  (void)flags;
  NEED_CONTEXT();
  INJECT("cuStreamCreate", OUT_OF_MEMORY);
  struct CUstream_st *s = calloc(1, sizeof(*s));
  if (!s)
    return OUT_OF_MEMORY;
  s->live = 1;
  pthread_mutex_lock(&lock);
  s->id = ++stream_count;
  s->next = streams;
  streams = s;
  pthread_mutex_unlock(&lock);
  *stream = s;
  trace("stream create %d", s->id);
  return SUCCESS;
}

EXPORT CUresult cuStreamDestroy_v2(CUstream stream) {
  NEED_CONTEXT();
  pthread_mutex_lock(&lock);
  CUresult result = stream_live(stream) ? SUCCESS : INVALID_HANDLE;
  if (result == SUCCESS)
    stream->live = 0;
  pthread_mutex_unlock(&lock);
  trace("stream destroy");
  return result;
}

EXPORT CUresult cuStreamSynchronize(CUstream stream) {
  NEED_CONTEXT();
  INJECT("cuStreamSynchronize", LAUNCH_FAILED);
  pthread_mutex_lock(&lock);
  CUresult result = SUCCESS;
  if (!stream_live(stream))
    result = INVALID_HANDLE;
  else if (stream->capturing) {
    stream->capture_failed = 1; /* the driver invalidates the capture */
    result = CAPTURE_UNSUPPORTED;
  }
  if (result == SUCCESS)
    trace("stream sync%s", stream_tag(stream));
  pthread_mutex_unlock(&lock);
  return result;
}

/* Work runs when it is queued: an event is complete once recorded, and
 * waiting for one returns at once. What the runtime asked for is logged. */
EXPORT CUresult cuEventCreate(CUevent *event, unsigned flags) {
  NEED_CONTEXT();
  INJECT("cuEventCreate", OUT_OF_MEMORY);
  if (!event || flags > 0xf)
    return INVALID_VALUE;
  struct CUevent_st *e = calloc(1, sizeof(*e));
  if (!e)
    return OUT_OF_MEMORY;
  e->live = 1;
  pthread_mutex_lock(&lock);
  e->id = ++event_count;
  e->next = events;
  events = e;
  pthread_mutex_unlock(&lock);
  *event = e;
  trace("event create %d", e->id);
  return SUCCESS;
}

EXPORT CUresult cuEventRecord(CUevent event, CUstream stream) {
  NEED_CONTEXT();
  INJECT("cuEventRecord", INVALID_HANDLE);
  pthread_mutex_lock(&lock);
  CUresult result =
      event_live(event) && stream_live(stream) ? SUCCESS : INVALID_HANDLE;
  if (result == SUCCESS)
    trace("event record %d%s", event->id, stream_tag(stream));
  pthread_mutex_unlock(&lock);
  return result;
}

EXPORT CUresult cuEventSynchronize(CUevent event) {
  NEED_CONTEXT();
  INJECT("cuEventSynchronize", LAUNCH_FAILED);
  pthread_mutex_lock(&lock);
  CUresult result = event_live(event) ? SUCCESS : INVALID_HANDLE;
  if (result == SUCCESS)
    trace("event sync %d", event->id);
  pthread_mutex_unlock(&lock);
  return result;
}

EXPORT CUresult cuStreamWaitEvent(CUstream stream, CUevent event,
                                  unsigned flags) {
  NEED_CONTEXT();
  INJECT("cuStreamWaitEvent", INVALID_HANDLE);
  pthread_mutex_lock(&lock);
  CUresult result = SUCCESS;
  if (!event_live(event) || !stream_live(stream))
    result = INVALID_HANDLE;
  else if (flags > 1)
    result = INVALID_VALUE;
  if (result == SUCCESS)
    trace("stream wait event %d%s", event->id, stream_tag(stream));
  pthread_mutex_unlock(&lock);
  return result;
}

EXPORT CUresult cuEventDestroy_v2(CUevent event) {
  NEED_CONTEXT();
  pthread_mutex_lock(&lock);
  CUresult result = event_live(event) ? SUCCESS : INVALID_HANDLE;
  if (result == SUCCESS)
    event->live = 0; /* kept, so that stale handles are recognized */
  pthread_mutex_unlock(&lock);
  trace("event destroy");
  return result;
}

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *pointer, size_t bytes) {
  NEED_CONTEXT();
  INJECT("cuMemAlloc_v2", OUT_OF_MEMORY);
  if (bytes == 0)
    return INVALID_VALUE;
  size_t rounded = (bytes + 255) / 256 * 256;
  allocation *a = calloc(1, sizeof(*a));
  uint8_t *base = rounded >= bytes ? aligned_alloc(256, rounded) : NULL;
  if (!a || !base) {
    free(a);
    free(base);
    return OUT_OF_MEMORY;
  }
  memset(base, 0xab, rounded); /* uninitialized device memory is garbage */
  a->live = 1;
  a->base = base;
  a->size = bytes;
  pthread_mutex_lock(&lock);
  a->next = allocations;
  allocations = a;
  pthread_mutex_unlock(&lock);
  *pointer = (CUdeviceptr)(uintptr_t)base;
  trace("alloc %zu", bytes);
  return SUCCESS;
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr pointer) {
  NEED_CONTEXT();
  CUresult result = INVALID_VALUE;
  size_t size = 0;
  pthread_mutex_lock(&lock);
  for (allocation *a = allocations; a; a = a->next)
    if (a->live && (CUdeviceptr)(uintptr_t)a->base == pointer) {
      a->live = 0;
      size = a->size;
      free(a->base);
      a->base = NULL;
      result = SUCCESS;
      break;
    }
  pthread_mutex_unlock(&lock);
  if (result == SUCCESS)
    trace("free %zu", size);
  else
    trace("bad free %#llx", pointer);
  return result;
}

/* A copy on `stream`: not allowed while it captures (copies from pageable
 * host memory cannot be captured), and confined to one live allocation. */
static CUresult copy(const char *what, CUstream stream, CUdeviceptr device,
                     size_t bytes) {
  NEED_CONTEXT();
  if (!stream_live(stream))
    return INVALID_HANDLE;
  if (stream->capturing) {
    stream->capture_failed = 1;
    return CAPTURE_UNSUPPORTED;
  }
  if (!find_allocation(device, bytes)) {
    trace("bad %s %zu at %#llx", what, bytes, device);
    return INVALID_VALUE;
  }
  trace("%s %zu%s", what, bytes, stream_tag(stream));
  return SUCCESS;
}

EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr destination,
                                     const void *source, size_t bytes,
                                     CUstream stream) {
  long only = env_long("MOE_FAKE_CUDA_FAIL_BYTES", -1);
  if (only < 0 || (size_t)only == bytes)
    INJECT("cuMemcpyHtoDAsync_v2", INVALID_VALUE);
  pthread_mutex_lock(&lock);
  CUresult result = copy("htod", stream, destination, bytes);
  if (result == SUCCESS)
    memcpy((void *)(uintptr_t)destination, source, bytes);
  pthread_mutex_unlock(&lock);
  return result;
}

EXPORT CUresult cuMemcpyDtoHAsync_v2(void *destination, CUdeviceptr source,
                                     size_t bytes, CUstream stream) {
  INJECT("cuMemcpyDtoHAsync_v2", LAUNCH_FAILED);
  pthread_mutex_lock(&lock);
  CUresult result = copy("dtoh", stream, source, bytes);
  if (result == SUCCESS)
    memcpy(destination, (const void *)(uintptr_t)source, bytes);
  pthread_mutex_unlock(&lock);
  return result;
}

/* Loads an image; with CU_JIT_ERROR_LOG_BUFFER (5) and its size (6) among the
 * options, an injected failure writes a JIT error log there. */
EXPORT CUresult cuModuleLoadDataEx(CUmodule *module, const void *image,
                                   unsigned count, int *options,
                                   void **values) {
  NEED_CONTEXT();
  CUresult fail = injected("cuModuleLoadDataEx", INVALID_IMAGE);
  if (fail != SUCCESS) {
    char *log = NULL;
    size_t size = 0;
    for (unsigned i = 0; i < count; ++i) {
      if (options[i] == 5)
        log = values[i];
      if (options[i] == 6)
        size = (size_t)(uintptr_t)values[i];
    }
    if (log && size > 0)
      snprintf(log, size,
               "fake ptxas: error: the test asked this load to "
               "fail\n");
    return fail;
  }
  if (!image)
    return INVALID_VALUE;
  const char *bytes = image;
  int cubin = memcmp(bytes,
                     "\x7f"
                     "ELF",
                     4) == 0;
  const char *text = cubin ? bytes + 4 : bytes;
  if (!cubin && !strstr(text, ".entry"))
    return INVALID_IMAGE; /* not PTX with a kernel */
  struct CUmod_st *m = calloc(1, sizeof(*m));
  if (!m || !(m->text = strdup(text))) {
    free(m);
    return OUT_OF_MEMORY;
  }
  m->live = 1;
  m->cubin = cubin;
  pthread_mutex_lock(&lock);
  m->next = modules;
  modules = m;
  pthread_mutex_unlock(&lock);
  *module = m;
  trace("module load %s", cubin ? "cubin" : "ptx");
  return SUCCESS;
}

EXPORT CUresult cuModuleLoadData(CUmodule *module, const void *image) {
  return cuModuleLoadDataEx(module, image, 0, NULL, NULL);
}

EXPORT CUresult cuModuleUnload(CUmodule module) {
  NEED_CONTEXT();
  pthread_mutex_lock(&lock);
  CUresult result = INVALID_HANDLE;
  for (struct CUmod_st *m = modules; m; m = m->next)
    if (m == module && m->live) {
      m->live = 0; /* kept, so that stale functions are recognized */
      result = SUCCESS;
    }
  pthread_mutex_unlock(&lock);
  trace("module unload");
  return result;
}

EXPORT CUresult cuModuleGetFunction(CUfunction *function, CUmodule module,
                                    const char *name) {
  NEED_CONTEXT();
  INJECT("cuModuleGetFunction", NOT_FOUND);
  if (!module || !module->live || !name)
    return INVALID_HANDLE;
  if (!has_word(module->text, name))
    return NOT_FOUND;
  struct CUfunc_st *f = calloc(1, sizeof(*f));
  if (!f || !(f->name = strdup(name))) {
    free(f);
    return OUT_OF_MEMORY;
  }
  f->module = module;
  f->max_dynamic_shared = 48 * 1024;
  pthread_mutex_lock(&lock);
  f->next = module->functions;
  module->functions = f;
  pthread_mutex_unlock(&lock);
  *function = f;
  trace("module function %s", name);
  return SUCCESS;
}

EXPORT CUresult cuFuncSetAttribute(CUfunction function, int attribute,
                                   int value) {
  NEED_CONTEXT();
  INJECT("cuFuncSetAttribute", INVALID_VALUE);
  pthread_mutex_lock(&lock);
  int live = function_live(function);
  pthread_mutex_unlock(&lock);
  if (!live)
    return INVALID_HANDLE;
  /* CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES */
  if (attribute != 8 || value < 0 || value > MAX_SHARED_OPTIN)
    return INVALID_VALUE;
  function->max_dynamic_shared = value;
  trace("func attribute %s max_dynamic_shared=%d", function->name, value);
  return SUCCESS;
}

EXPORT CUresult cuLaunchKernel(CUfunction function, unsigned gridX,
                               unsigned gridY, unsigned gridZ, unsigned blockX,
                               unsigned blockY, unsigned blockZ,
                               unsigned shared, CUstream stream,
                               void **parameters, void **extra) {
  NEED_CONTEXT();
  pthread_mutex_lock(&lock);
  CUresult result = SUCCESS;
  int capturing = stream_live(stream) && stream->capturing;
  if (!stream_live(stream) || !function_live(function))
    result = INVALID_HANDLE;
  else if ((result = injected("cuLaunchKernel", LAUNCH_FAILED)) != SUCCESS)
    ;
  else if (!parameters || extra || !gridX || !gridY || !gridZ || !blockX ||
           !blockY || !blockZ || blockX * blockY * blockZ > 1024 ||
           (int)shared > function->max_dynamic_shared)
    result = INVALID_VALUE;
  if (result != SUCCESS) {
    if (capturing)
      stream->capture_failed = 1;
    pthread_mutex_unlock(&lock);
    return result;
  }
  launch_record record = {
      function, {gridX, gridY, gridZ}, {blockX, blockY, blockZ}, shared, {0}};
  for (int i = 0; i < PARAMS; ++i)
    memcpy(&record.params[i], parameters[i], sizeof(record.params[i]));
  char text[512];
  describe(&record, text, sizeof(text));
  if (capturing) {
    append(&stream->graph->list, &record);
    trace("capture %s%s", text, stream_tag(stream));
  } else {
    trace("launch %s%s", text, stream_tag(stream));
    result = execute(&record);
  }
  pthread_mutex_unlock(&lock);
  return result;
}

EXPORT CUresult cuStreamBeginCapture_v2(CUstream stream, int mode) {
  NEED_CONTEXT();
  INJECT("cuStreamBeginCapture_v2", CAPTURE_UNSUPPORTED);
  if (mode < 0 || mode > 2)
    return INVALID_VALUE;
  pthread_mutex_lock(&lock);
  CUresult result = SUCCESS;
  struct CUgraph_st *graph = NULL;
  if (!stream_live(stream))
    result = INVALID_HANDLE;
  else if (stream->capturing)
    result = CAPTURE_UNSUPPORTED;
  else if (!(graph = calloc(1, sizeof(*graph))))
    result = OUT_OF_MEMORY;
  if (result == SUCCESS) {
    graph->live = 1;
    graph->next = graphs;
    graphs = graph;
    stream->capturing = 1;
    stream->capture_failed = 0;
    stream->graph = graph;
  }
  pthread_mutex_unlock(&lock);
  if (result == SUCCESS)
    trace("graph capture begin");
  return result;
}

EXPORT CUresult cuStreamEndCapture(CUstream stream, CUgraph *graph) {
  NEED_CONTEXT();
  pthread_mutex_lock(&lock);
  if (!stream_live(stream) || !stream->capturing) {
    pthread_mutex_unlock(&lock);
    return INVALID_VALUE;
  }
  CUgraph captured = stream->graph;
  int failed = stream->capture_failed;
  stream->capturing = 0;
  stream->graph = NULL;
  int count = captured->list.count;
  if (failed)
    captured->live = 0; /* the driver discards an invalidated capture */
  pthread_mutex_unlock(&lock);
  CUresult fail = injected("cuStreamEndCapture", CAPTURE_INVALIDATED);
  if (fail) {
    pthread_mutex_lock(&lock);
    captured->live = 0;
    pthread_mutex_unlock(&lock);
  }
  if (failed || fail) {
    *graph = NULL;
    trace("graph capture failed");
    return fail ? fail : CAPTURE_INVALIDATED;
  }
  *graph = captured;
  trace("graph capture end %d", count);
  return SUCCESS;
}

EXPORT CUresult cuGraphInstantiateWithFlags(CUgraphExec *exec, CUgraph graph,
                                            unsigned long long flags) {
  (void)flags;
  NEED_CONTEXT();
  INJECT("cuGraphInstantiateWithFlags", OUT_OF_MEMORY);
  if (!graph || !graph->live)
    return INVALID_HANDLE;
  struct CUgraphExec_st *e = calloc(1, sizeof(*e));
  if (!e)
    return OUT_OF_MEMORY;
  pthread_mutex_lock(&lock);
  e->live = 1;
  for (int i = 0; i < graph->list.count; ++i)
    append(&e->list, &graph->list.launches[i]);
  e->next = execs;
  execs = e;
  pthread_mutex_unlock(&lock);
  *exec = e;
  trace("graph instantiate %d", e->list.count);
  return SUCCESS;
}

EXPORT CUresult cuGraphLaunch(CUgraphExec exec, CUstream stream) {
  NEED_CONTEXT();
  INJECT("cuGraphLaunch", LAUNCH_FAILED);
  pthread_mutex_lock(&lock);
  CUresult result = SUCCESS;
  if (!exec || !exec->live || !stream_live(stream) || stream->capturing)
    result = INVALID_HANDLE;
  if (result == SUCCESS) {
    trace("graph launch %d%s", exec->list.count, stream_tag(stream));
    for (int i = 0; i < exec->list.count && result == SUCCESS; ++i) {
      char text[512];
      describe(&exec->list.launches[i], text, sizeof(text));
      trace("replay %s", text);
      result = execute(&exec->list.launches[i]);
    }
  }
  pthread_mutex_unlock(&lock);
  return result;
}

EXPORT CUresult cuGraphExecDestroy(CUgraphExec exec) {
  NEED_CONTEXT();
  pthread_mutex_lock(&lock);
  CUresult result = exec && exec->live ? SUCCESS : INVALID_HANDLE;
  if (result == SUCCESS)
    exec->live = 0;
  pthread_mutex_unlock(&lock);
  trace("graph exec destroy");
  return result;
}

EXPORT CUresult cuGraphDestroy(CUgraph graph) {
  NEED_CONTEXT();
  pthread_mutex_lock(&lock);
  CUresult result = graph && graph->live ? SUCCESS : INVALID_HANDLE;
  if (result == SUCCESS)
    graph->live = 0;
  pthread_mutex_unlock(&lock);
  trace("graph destroy");
  return result;
}

#ifndef FAKE_CUDA_NO_TENSOR_MAP
/* The requirements of cuda.h's documentation of cuTensorMapEncodeTiled. */
EXPORT CUresult cuTensorMapEncodeTiled(
    CUtensorMap *tensorMap, int type, cuuint32_t rank, void *globalAddress,
    const cuuint64_t *globalDim, const cuuint64_t *globalStrides,
    const cuuint32_t *boxDim, const cuuint32_t *elementStrides, int interleave,
    int swizzle, int l2Promotion, int oobFill) {
  if (!initialized)
    return NOT_INITIALIZED;
  INJECT("cuTensorMapEncodeTiled", INVALID_VALUE);
  const char *why = NULL;
  int size = element_bytes(type);
  uintptr_t address = (uintptr_t)globalAddress;
  if (!tensorMap || (uintptr_t)tensorMap % 64 != 0)
    why = "tensorMap is not 64-byte aligned";
  else if (type < 0 || type > 15)
    why = "bad data type";
  else if (!size)
    why = "packed data types are not faked";
  else if (rank < 1 || rank > 5)
    why = "rank is not 1 to 5";
  else if (interleave < 0 || interleave > 2 || swizzle < 0 || swizzle > 6 ||
           l2Promotion < 0 || l2Promotion > 3 || oobFill < 0 || oobFill > 1)
    why = "bad interleave, swizzle, L2 promotion or OOB fill";
  else if (interleave != 0 && rank < 3)
    why = "interleaved layouts need rank 3 or more";
  else if (!address || address % (interleave == 2 ? 32 : 16) != 0)
    why = "globalAddress is not aligned";
  else if (!globalDim || !boxDim || !elementStrides ||
           (rank > 1 && !globalStrides))
    why = "an array is null";
  for (cuuint32_t d = 0; !why && d < rank; ++d) {
    if (globalDim[d] < 1 || globalDim[d] > (1ull << 32))
      why = "globalDim is not 1 to 2^32";
    else if (boxDim[d] < 1 || boxDim[d] > 256)
      why = "boxDim is not 1 to 256";
    else if (elementStrides[d] < 1 || elementStrides[d] > 8)
      why = "elementStrides is not 1 to 8";
    else if (d + 1 < rank &&
             (globalStrides[d] % (interleave == 2 ? 32 : 16) != 0 ||
              globalStrides[d] >= (1ull << 40)))
      why = "globalStrides is not a multiple of 16 below 2^40";
  }
  uint32_t inner = why ? 0 : boxDim[0] * (uint32_t)size;
  if (!why && interleave == 0 && inner % 16 != 0)
    why = "boxDim[0] is not a multiple of 16 bytes";
  if (!why && interleave == 0 && swizzle != 0 &&
      inner > (swizzle == 1   ? 32u
               : swizzle == 2 ? 64u
                              : 128u))
    why = "the box's inner dimension exceeds the swizzle span";
  fake_tensor_map map;
  memset(&map, 0, sizeof(map));
  if (!why) {
    memcpy(map.magic, FAKE_TENSOR_MAP_MAGIC, 8);
    map.type = (uint32_t)type;
    map.rank = rank;
    map.swizzle = (uint32_t)swizzle;
    map.interleave = (uint32_t)interleave;
    map.address = address;
    for (cuuint32_t d = 0; d < rank; ++d) {
      map.dims[d] = globalDim[d];
      map.box[d] = boxDim[d];
      if (d + 1 < rank)
        map.strides[d] = globalStrides[d];
    }
  }
  /* Stricter than the driver: the region must be device memory. */
  pthread_mutex_lock(&lock);
  allocation *a = why ? NULL : find_allocation(address, map_extent(&map));
  if (!why && !a)
    why = "the region is not inside one live allocation";
  size_t at = a ? (size_t)(address - (uintptr_t)a->base) : 0;
  size_t of = a ? a->size : 0;
  pthread_mutex_unlock(&lock);

  char text[512];
  int length = snprintf(text, sizeof(text), "rank=%u dims=", rank);
  for (cuuint32_t d = 0; d < rank && d < 5 && globalDim; ++d)
    length += snprintf(text + length, sizeof(text) - (size_t)length, "%s%llu",
                       d ? "," : "", (unsigned long long)globalDim[d]);
  length += snprintf(text + length, sizeof(text) - (size_t)length, " strides=");
  for (cuuint32_t d = 0; d + 1 < rank && d < 4 && globalStrides; ++d)
    length += snprintf(text + length, sizeof(text) - (size_t)length, "%s%llu",
                       d ? "," : "", (unsigned long long)globalStrides[d]);
  length += snprintf(text + length, sizeof(text) - (size_t)length, " box=");
  for (cuuint32_t d = 0; d < rank && d < 5 && boxDim; ++d)
    length += snprintf(text + length, sizeof(text) - (size_t)length, "%s%u",
                       d ? "," : "", boxDim[d]);
  snprintf(text + length, sizeof(text) - (size_t)length, " swizzle=%d type=%d",
           swizzle, type);
  if (why) {
    trace("bad tensor map encode %s: %s", text, why);
    return INVALID_VALUE;
  }
  memset(tensorMap, 0, sizeof(*tensorMap));
  memcpy(tensorMap, &map, sizeof(map));
  trace("tensor map encode %s at=+%zu/%zu", text, at, of);
  return SUCCESS;
}
#endif

/*===----------------------------------------------------------------------===*
 * For the tests
 *===----------------------------------------------------------------------===*/

/* Fills every live allocation with garbage, as other work reusing the memory
 * would leave it. */
EXPORT void fake_cuda_clobber(void) {
  pthread_mutex_lock(&lock);
  for (allocation *a = allocations; a; a = a->next)
    if (a->live)
      memset(a->base, 0xcd, a->size);
  pthread_mutex_unlock(&lock);
  trace("clobber");
}

/* The number of a live stream, as "stream create N" logged it; 0 if `stream`
 * is none. */
EXPORT int fake_cuda_stream_id(void *stream) {
  pthread_mutex_lock(&lock);
  int id = stream_live(stream) ? ((CUstream)stream)->id : 0;
  pthread_mutex_unlock(&lock);
  return id;
}

/* The number of objects not released yet (allocations, modules, streams,
 * graphs, executable graphs, events, context retains), described in `out`. */
EXPORT int fake_cuda_live(char *out, size_t size) {
  int counts[7] = {0};
  pthread_mutex_lock(&lock);
  for (allocation *a = allocations; a; a = a->next)
    counts[0] += a->live;
  for (struct CUmod_st *m = modules; m; m = m->next)
    counts[1] += m->live;
  for (struct CUstream_st *s = streams; s; s = s->next)
    counts[2] += s->live;
  for (struct CUgraph_st *g = graphs; g; g = g->next)
    counts[3] += g->live;
  for (struct CUgraphExec_st *e = execs; e; e = e->next)
    counts[4] += e->live;
  for (struct CUevent_st *e = events; e; e = e->next)
    counts[5] += e->live;
  for (int d = 0; d < MAX_DEVICES; ++d)
    counts[6] += contexts[d].retained;
  pthread_mutex_unlock(&lock);
  snprintf(out, size,
           "allocations=%d modules=%d streams=%d graphs=%d graph_execs=%d "
           "events=%d context_retains=%d",
           counts[0], counts[1], counts[2], counts[3], counts[4], counts[5],
           counts[6]);
  int total = 0;
  for (int i = 0; i < 7; ++i)
    total += counts[i];
  return total;
}

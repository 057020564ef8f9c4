/* gosight — the goroutine running on the current thread, from kernel hooks that
 * are not uprobes (no Go registers at hand): Go on linux/amd64 keeps the current g
 * in thread-local storage, at fs base - 8. Used by sk_msg (context_propagation)
 * and by the net/http server's tracepoint programs.
 */
#pragma once

#include "go_types.h"
#include <bpf/bpf_core_read.h>

/* Offset of the goroutine pointer from the thread pointer (fs base) for Go on
 * linux/amd64. */
#define GO_G_TLS_OFFSET_AMD64 -8

struct thread_struct {
	unsigned long fsbase;
} __attribute__((preserve_access_index));

struct task_struct {
	struct thread_struct thread;
} __attribute__((preserve_access_index));

/* The g the current thread runs (0: not a Go thread, or unreadable). */
static __always_inline u64 current_goroutine_at(s64 tls_offset)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	unsigned long fsbase = BPF_CORE_READ(task, thread.fsbase);
	if (!fsbase)
		return 0;
	u64 g = 0;
	bpf_probe_read_user(&g, sizeof(g), (void *)(fsbase + tls_offset));
	return g;
}

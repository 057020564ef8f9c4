/* gosight — the maps several objects share (include/shared_maps.h), in an object of
 * their own with no program: gosight loads it once and holds the maps by file
 * descriptor; they are pinned only while another object loads (see bpffs.rs), so a
 * gosight that dies leaves nothing on the BPF filesystem. */
#include "shared_maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

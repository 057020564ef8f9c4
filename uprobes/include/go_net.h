/* gosight — reading Go net.Addr values (a *net.TCPAddr behind the interface). */
#pragma once

#include "go_types.h"

/* Runtime address of go:itab.*net.TCPAddr,net.Addr (0 = unknown). */
volatile const u64 tcp_addr_itab = 0;
volatile const u64 off_tcpaddr_ip = OFF_ABSENT;   /* net.TCPAddr.IP ([]byte) */
volatile const u64 off_tcpaddr_port = OFF_ABSENT; /* net.TCPAddr.Port (int) */

struct ip_port {
	u8 ip[16];
	u8 ip_len; /* 4 or 16; 0 = unknown */
	u8 _pad;
	u16 port;
	u32 _pad2;
};

/* Reads the net.Addr interface stored at `iface_addr` when it is a *net.TCPAddr. */
static __always_inline void read_tcp_addr(u64 iface_addr, struct ip_port *out)
{
	struct go_iface a = {};
	if (!iface_addr || tcp_addr_itab == 0 || off_tcpaddr_ip == OFF_ABSENT)
		return;
	if (bpf_probe_read_user(&a, sizeof(a), (void *)iface_addr) || a.tab != tcp_addr_itab || !a.data)
		return;
	struct { u64 ptr; s64 len; } ip = {};
	if (bpf_probe_read_user(&ip, sizeof(ip), (void *)(a.data + off_tcpaddr_ip)))
		return;
	if (ip.len == 4 || ip.len == 16) {
		if (ip.len == 4)
			bpf_probe_read_user(out->ip, 4, (void *)ip.ptr);
		else
			bpf_probe_read_user(out->ip, 16, (void *)ip.ptr);
		out->ip_len = ip.len;
	}
	if (off_tcpaddr_port != OFF_ABSENT)
		out->port = (u16)read_u64(a.data + off_tcpaddr_port);
}

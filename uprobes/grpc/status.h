/* gosight — the gRPC status code of a *status.Status, or of an error value. */
#pragma once

#include "go_types.h"

volatile const u64 off_status_s = OFF_ABSENT;      /* grpc/internal/status.Status.s */
volatile const u64 off_spb_code = OFF_ABSENT;      /* genproto rpc/status.Status.Code */
volatile const u64 off_status_error_s = OFF_ABSENT;/* grpc/internal/status.Error.s */
volatile const u64 status_error_itab = 0;          /* go:itab.*…/internal/status.Error,error */
volatile const u64 errors_string_itab = 0;         /* go:itab.*errors.errorString,error */

#define GRPC_UNKNOWN 2

/* Code of a *status.Status (nil, or nil inner proto, is OK). */
static __always_inline s32 grpc_status_code(u64 st)
{
	if (!st || off_status_s == OFF_ABSENT || off_spb_code == OFF_ABSENT)
		return 0;
	u64 s = read_u64(st + off_status_s);
	if (!s)
		return 0;
	s32 code = 0;
	bpf_probe_read_user(&code, sizeof(code), (void *)(s + off_spb_code));
	return code;
}

/* Code of an error value (itab, data): nil and io.EOF are OK; a *status.Error has
 * its code; anything else is Unknown. */
static __always_inline s32 grpc_error_code(u64 tab, u64 data)
{
	if (!tab)
		return 0;
	if (errors_string_itab && tab == errors_string_itab) {
		/* io.EOF: an *errors.errorString whose text is "EOF". */
		struct go_string s = {};
		char text[4] = {};
		bpf_probe_read_user(&s, sizeof(s), (void *)data);
		if (s.len == 3 && !bpf_probe_read_user(text, 3, (void *)s.ptr) &&
		    text[0] == 'E' && text[1] == 'O' && text[2] == 'F')
			return 0;
	}
	if (status_error_itab && tab == status_error_itab && off_status_error_s != OFF_ABSENT)
		return grpc_status_code(read_u64(data + off_status_error_s));
	return GRPC_UNKNOWN;
}

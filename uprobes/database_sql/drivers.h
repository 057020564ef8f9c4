/* gosight — what the SQL probes read of the drivers they know by name (pgx v5,
 * lib/pq, go-sql-driver/mysql): which driver a connection belongs to, the server
 * it is connected to and the database (db.namespace), and the server's error
 * code in a returned error. Every offset and itab is filled per target by the
 * loader (drivers.rs); what is unknown stays empty.
 */
#pragma once

#include "go_types.h"
#include "go_net.h"
#include "records.h"

/* Itabs (<type>, <interface>), plus the load bias; 0 = absent. */
volatile const u64 pgx_conn_itab = 0;     /* *pgx/v5/stdlib.Conn, driver.Conn */
volatile const u64 pq_conn_itab = 0;      /* *lib/pq.conn, driver.Conn */
volatile const u64 mysql_conn_itab = 0;   /* *mysql.mysqlConn, driver.Conn */
volatile const u64 pgerror_itab = 0;      /* *pgconn.PgError, error */
volatile const u64 prepareerror_itab = 0; /* *pgconn.PrepareError, error */
volatile const u64 pqerror_itab = 0;      /* *pq.Error, error */
volatile const u64 mysqlerror_itab = 0;   /* *mysql.MySQLError, error */
volatile const u64 tcpconn_itab = 0;      /* *net.TCPConn, net.Conn */

volatile const u64 off_pgx_stdlib_conn = OFF_ABSENT;
volatile const u64 off_pgx_conn_pgconn = OFF_ABSENT;
volatile const u64 off_pgx_conn_config = OFF_ABSENT;
volatile const u64 off_pgx_connconfig_config = OFF_ABSENT;
volatile const u64 off_pgconn_config_database = OFF_ABSENT;
volatile const u64 off_pgconn_conn = OFF_ABSENT;
volatile const u64 off_pgerror_code = OFF_ABSENT;
volatile const u64 off_prepareerror_err = OFF_ABSENT;
volatile const u64 off_pgx_rows_err = OFF_ABSENT;
volatile const u64 off_pgx_rows_closed = OFF_ABSENT;
volatile const u64 off_pgx_rows_reader = OFF_ABSENT;
volatile const u64 off_pgx_reader_err = OFF_ABSENT;
volatile const u64 off_pq_conn_c = OFF_ABSENT;
volatile const u64 off_pq_conn_cfg = OFF_ABSENT;
volatile const u64 off_pq_config_database = OFF_ABSENT;
volatile const u64 off_pqerror_code = OFF_ABSENT;
volatile const u64 off_mysql_conn_netconn = OFF_ABSENT;
volatile const u64 off_mysql_conn_cfg = OFF_ABSENT;
volatile const u64 off_mysql_config_dbname = OFF_ABSENT;
volatile const u64 off_mysqlerror_number = OFF_ABSENT;
volatile const u64 off_tcpconn_conn = OFF_ABSENT;
volatile const u64 off_conn_fd = OFF_ABSENT;
volatile const u64 off_netfd_raddr = OFF_ABSENT;

/* The driver of a driver.Conn interface value's type word. */
static __always_inline u8 sql_system_of(u64 tab)
{
	if (!tab)
		return SQL_SYSTEM_UNKNOWN;
	if (tab == pgx_conn_itab)
		return SQL_SYSTEM_PGX;
	if (tab == pq_conn_itab)
		return SQL_SYSTEM_PQ;
	if (tab == mysql_conn_itab)
		return SQL_SYSTEM_MYSQL;
	return SQL_SYSTEM_UNKNOWN;
}

/* The remote address of the net.Conn interface stored at `iface_addr`, when it
 * is a *net.TCPConn (TCPConn → conn → fd *netFD → raddr). */
static __always_inline void read_net_conn_peer(u64 iface_addr, struct ip_port *out)
{
	struct go_iface c = {};
	if (!iface_addr || !tcpconn_itab || off_tcpconn_conn == OFF_ABSENT || off_conn_fd == OFF_ABSENT ||
	    off_netfd_raddr == OFF_ABSENT)
		return;
	if (bpf_probe_read_user(&c, sizeof(c), (void *)iface_addr) || c.tab != tcpconn_itab || !c.data)
		return;
	u64 fd = read_u64(c.data + off_tcpconn_conn + off_conn_fd);
	if (fd)
		read_tcp_addr(fd + off_netfd_raddr, out);
}

/* The server and database of a pgx connection (*pgx.Conn). */
static __always_inline void read_pgx_conn(u64 conn, struct sql_target *out)
{
	if (!conn)
		return;
	if (off_pgx_conn_pgconn != OFF_ABSENT && off_pgconn_conn != OFF_ABSENT) {
		u64 pg = read_u64(conn + off_pgx_conn_pgconn);
		if (pg)
			read_net_conn_peer(pg + off_pgconn_conn, &out->peer);
	}
	if (off_pgx_conn_config != OFF_ABSENT && off_pgx_connconfig_config != OFF_ABSENT &&
	    off_pgconn_config_database != OFF_ABSENT) {
		u64 cfg = read_u64(conn + off_pgx_conn_config);
		if (cfg)
			out->namespace_len = read_go_string(out->namespace, SQL_NAMESPACE_CAP, cfg,
							    off_pgx_connconfig_config + off_pgconn_config_database);
	}
}

/* The server and database of the driver connection `data` of driver `system`. */
static __always_inline void read_sql_target(u8 system, u64 data, struct sql_target *out)
{
	if (!data)
		return;
	if (system == SQL_SYSTEM_PGX) {
		if (off_pgx_stdlib_conn != OFF_ABSENT)
			read_pgx_conn(read_u64(data + off_pgx_stdlib_conn), out);
	} else if (system == SQL_SYSTEM_PQ) {
		if (off_pq_conn_c != OFF_ABSENT)
			read_net_conn_peer(data + off_pq_conn_c, &out->peer);
		if (off_pq_conn_cfg != OFF_ABSENT && off_pq_config_database != OFF_ABSENT)
			out->namespace_len = read_go_string(out->namespace, SQL_NAMESPACE_CAP, data,
							    off_pq_conn_cfg + off_pq_config_database);
	} else if (system == SQL_SYSTEM_MYSQL) {
		if (off_mysql_conn_netconn != OFF_ABSENT)
			read_net_conn_peer(data + off_mysql_conn_netconn, &out->peer);
		if (off_mysql_conn_cfg != OFF_ABSENT) {
			u64 cfg = read_u64(data + off_mysql_conn_cfg);
			if (cfg)
				out->namespace_len = read_go_string(out->namespace, SQL_NAMESPACE_CAP, cfg,
								    off_mysql_config_dbname);
		}
	}
}

/* The server's code in the returned error (tab, data): PostgreSQL's SQLSTATE
 * (pgx, also inside a PrepareError; lib/pq) into `code`, MySQL's error number
 * into `number`. */
static __always_inline void read_sql_error(u64 tab, u64 data, struct sql_error *out)
{
	if (!tab || !data)
		return;
	if (tab == prepareerror_itab && off_prepareerror_err != OFF_ABSENT) {
		struct go_iface inner = {};
		bpf_probe_read_user(&inner, sizeof(inner), (void *)(data + off_prepareerror_err));
		tab = inner.tab;
		data = inner.data;
		if (!tab || !data)
			return;
	}
	if (tab == pgerror_itab)
		out->code_len = read_go_string(out->code, SQL_CODE_CAP, data, off_pgerror_code);
	else if (tab == pqerror_itab)
		out->code_len = read_go_string(out->code, SQL_CODE_CAP, data, off_pqerror_code);
	else if (tab == mysqlerror_itab && off_mysqlerror_number != OFF_ABSENT) {
		u16 n = 0;
		if (!bpf_probe_read_user(&n, sizeof(n), (void *)(data + off_mysqlerror_number)))
			out->number = n;
	}
}

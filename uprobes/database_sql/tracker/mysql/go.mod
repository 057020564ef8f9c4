module gosight.dev/offsets-tracker/mysql

go 1.22

require github.com/go-sql-driver/mysql v1.6.0

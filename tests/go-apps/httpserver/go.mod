module gosight.dev/testapps/httpserver

go 1.22

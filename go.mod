module github.com/telcni/telcni

go 1.26.8

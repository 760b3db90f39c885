module github.com/kafkad/kafkad/client-stubs/go

go 1.24

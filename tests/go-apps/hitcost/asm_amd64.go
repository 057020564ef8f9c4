package main

// Functions of one instruction before their RET (asm_amd64.s).
func asmNop()
func asmNop5()
func asmJmp()
func asmCall()
func asmPush()
func asmMov()

var asmFunctions = map[string]func(){
	"asmNop":  asmNop,
	"asmNop5": asmNop5,
	"asmJmp":  asmJmp,
	"asmCall": asmCall,
	"asmPush": asmPush,
	"asmMov":  asmMov,
}

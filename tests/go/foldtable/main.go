package main

import (
	"fmt"
	"unicode"
)

// foldRune as encoding/json: the smallest rune of r's SimpleFold orbit.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

func main() {
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if r >= 0xD800 && r <= 0xDFFF {
			continue
		}
		if f := foldRune(r); f != r {
			fmt.Printf("%x %x\n", r, f)
		}
	}
}

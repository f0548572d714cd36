package port

// The params tests name lab: hosts; the lab's transport validates them.
import _ "github.com/opsdrill/opsdrill/lab"

/* Scopes, for library code. A collecting scope (spin_scope_begin in core/tensor.h) takes the
 * reference of every tensor created while it is on top. Library code that manages references
 * itself pushes a manual frame, so its temporaries are created with ordinary ownership, and hands
 * its result to the caller's scope with spin_scope_adopt. */
#ifndef SPIN_CORE_SCOPE_H
#define SPIN_CORE_SCOPE_H

#include "core/tensor.h"

void spin_scope_manual_begin(void);
void spin_scope_manual_end(void);
/* Gives the caller's reference on t to the top scope when that scope collects; returns t. */
spin_tensor *spin_scope_adopt(spin_tensor *t);

#endif

; Definitions: the captured node is the chunk, @name its symbol.
(class_definition name: (identifier) @name) @definition.class
(function_definition name: (identifier) @name) @definition.function

; References: names used here and (perhaps) defined elsewhere.
(call function: (identifier) @reference)
(call function: (attribute attribute: (identifier) @reference))
(class_definition superclasses: (argument_list (identifier) @reference))
(type (identifier) @reference)

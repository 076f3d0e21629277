; Definitions: the captured node is the chunk, @name its symbol.
(class_declaration name: (identifier) @name) @definition.class
(interface_declaration name: (identifier) @name) @definition.interface
(enum_declaration name: (identifier) @name) @definition.enum
(record_declaration name: (identifier) @name) @definition.class
(method_declaration name: (identifier) @name) @definition.method
(constructor_declaration name: (identifier) @name) @definition.method

; References: names used here and (perhaps) defined elsewhere.
(method_invocation name: (identifier) @reference)
(type_identifier) @reference

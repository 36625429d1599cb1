//! `#[derive(SconeState)]`: turns a plain struct into a service's per-session state with
//! per-field change tracking. Re-exported by `scone-rpc`; see `scone_rpc::state`.
//!
//! For `struct CartState { items: Vec<String>, .. }` with `#[scone(service = "cart")]` it
//! generates the `SconeState` impl and a handle, `CartStateTracked`, that reads every field
//! through `Deref` and hands out `items_mut()` and friends, which mark the field for the
//! comparison that decides whether anything changed.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{parse_macro_input, Data, DeriveInput, Fields, LitStr};

/// Derives `scone_rpc::state::SconeState`; requires `#[scone(service = "name")]`.
#[proc_macro_derive(SconeState, attributes(scone))]
pub fn derive_scone_state(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// The same rule as `scone::ServiceId::new`, checked at compile time.
fn check_service(name: &LitStr) -> syn::Result<String> {
    let value = name.value();
    if value.is_empty() || value.len() > 128 {
        return Err(syn::Error::new(
            name.span(),
            "the service name must be 1 to 128 bytes long",
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':')))
    {
        return Err(syn::Error::new(
            name.span(),
            format!(
                "the service name may not contain {bad:?} (allowed: letters, digits and . _ - / :)"
            ),
        ));
    }
    Ok(value)
}

fn service_attr(input: &DeriveInput) -> syn::Result<String> {
    let mut service = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("scone")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("service") {
                if service.is_some() {
                    return Err(meta.error("`service` is given twice"));
                }
                service = Some(check_service(&meta.value()?.parse::<LitStr>()?)?);
                Ok(())
            } else {
                Err(meta.error("unknown scone attribute; expected `service = \"...\"`"))
            }
        })?;
    }
    service.ok_or_else(|| {
        syn::Error::new(
            input.ident.span(),
            "missing `#[scone(service = \"...\")]`: name the service this state belongs to",
        )
    })
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => &named.named,
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    "SconeState needs named fields: change tracking works field by field",
                ))
            }
        },
        Data::Enum(data) => {
            return Err(syn::Error::new(
                data.enum_token.span(),
                "SconeState can only be derived for structs with named fields, not enums",
            ))
        }
        Data::Union(data) => {
            return Err(syn::Error::new(
                data.union_token.span(),
                "SconeState can only be derived for structs with named fields, not unions",
            ))
        }
    };
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new(
            input.generics.span(),
            "SconeState does not support generic structs",
        ));
    }
    let service = service_attr(input)?;

    let name = &input.ident;
    let vis = &input.vis;
    let tracked = format_ident!("{}Tracked", name);
    let idents: Vec<_> = fields.iter().filter_map(|f| f.ident.as_ref()).collect();
    let names: Vec<_> = idents.iter().map(|i| i.to_string()).collect();
    let indices: Vec<_> = (0..idents.len()).collect();
    let krate = quote!(::scone_rpc);

    let accessors = fields.iter().enumerate().filter_map(|(index, field)| {
        let ident = field.ident.as_ref()?;
        let ty = &field.ty;
        let field_vis = &field.vis;
        let accessor = format_ident!("{}_mut", ident);
        let doc =
            format!("`{ident}`, mutably; marks it for the change check at [`save`](Self::save).");
        Some(quote! {
            #[doc = #doc]
            #field_vis fn #accessor(&mut self) -> &mut #ty {
                self.0.touch(#index);
                &mut self.0.value_mut().#ident
            }
        })
    });
    let first = idents
        .first()
        .map_or_else(|| "field".to_owned(), |i| i.to_string());
    let tracked_doc = format!(
        "Change-tracking handle of [`{name}`], from `{name}::load()`.\n\n\
         - **Read** fields through `Deref`: `state.{first}`.\n\
         - **Write** through the generated `_mut` accessors: `*state.{first}_mut() = ...`. \
           `state.{first} = ...` does not compile (\"`DerefMut` is required\"): a write \
           must go through an accessor so the field is marked for the change check.\n\
         - **Save** with [`save`](Self::save): a new SCONE is minted for the reply only if \
           a marked field really changed. A handle dropped without `save` loses its \
           changes; debug builds log a warning when that happens to a changed handle, and \
           [`discard`](Self::discard) drops changes on purpose."
    );
    let service_lit = LitStr::new(&service, Span::call_site());

    Ok(quote! {
        impl #krate::state::SconeState for #name {
            const SERVICE: &'static str = #service_lit;
            const FIELDS: &'static [&'static str] = &[#(#names),*];
            type Tracked = #tracked;

            fn encode_field(
                &self,
                index: usize,
                out: ::std::vec::Vec<u8>,
            ) -> ::core::result::Result<::std::vec::Vec<u8>, #krate::state::StateError> {
                match index {
                    #(#indices => #krate::__private::postcard::to_extend(&self.#idents, out)
                        .map_err(#krate::state::StateError::Encode),)*
                    _ => ::core::result::Result::Err(#krate::state::StateError::UnknownField(index)),
                }
            }

            fn decode_field(
                &mut self,
                index: usize,
                bytes: &[u8],
            ) -> ::core::result::Result<(), #krate::state::StateError> {
                match index {
                    #(#indices => {
                        self.#idents = #krate::__private::postcard::from_bytes(bytes).map_err(|source| {
                            #krate::state::StateError::FieldDecode { field: #names, source }
                        })?;
                        ::core::result::Result::Ok(())
                    })*
                    _ => ::core::result::Result::Err(#krate::state::StateError::UnknownField(index)),
                }
            }
        }

        #[doc = #tracked_doc]
        #[must_use = "a loaded state does nothing unless read, or changed and saved"]
        #vis struct #tracked(#krate::state::Tracker<#name>);

        impl ::core::convert::From<#krate::state::Tracker<#name>> for #tracked {
            fn from(tracker: #krate::state::Tracker<#name>) -> Self {
                Self(tracker)
            }
        }

        impl ::core::ops::Deref for #tracked {
            type Target = #name;
            fn deref(&self) -> &#name {
                self.0.value()
            }
        }

        impl #tracked {
            #(#accessors)*

            /// Writes the state back to the request if a field changed; a new SCONE is
            /// then minted for the reply.
            #vis fn save(self) -> ::core::result::Result<#krate::state::Saved, #krate::state::StateError> {
                self.0.save()
            }

            /// The changed fields with their new values.
            #vis fn delta(&self) -> ::core::result::Result<#krate::state::Delta, #krate::state::StateError> {
                self.0.delta()
            }

            /// The tracker underneath.
            #vis fn tracker(&self) -> &#krate::state::Tracker<#name> {
                &self.0
            }

            /// The value, ending tracking (any change is not saved).
            #vis fn into_inner(self) -> #name {
                self.0.into_inner()
            }

            /// Drops the changes on purpose: nothing is saved, and no warning is logged.
            #vis fn discard(self) {
                self.0.discard()
            }

            /// Ends the session instead of saving: no new SCONE is minted, and a
            /// placement that keeps sessions drops it, so the next call starts anew.
            #vis fn end_session(self) -> ::core::result::Result<(), #krate::state::StateError> {
                self.0.end_session()
            }
        }
    })
}
